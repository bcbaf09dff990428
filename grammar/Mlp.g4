// Grammar of the mlp pipeline language. The AST builder (compiler/parse/)
// turns this parse tree into the typed AST; the grammar is kept LL(2)-friendly
// so that SLL prediction succeeds on every well-formed file.
grammar Mlp;

file : topDecl* EOF ;

topDecl
  : importDecl
  | pipelineDecl
  | paramDecl
  | resourcesDecl
  | clusterDecl
  | kernelDecl
  | envDecl
  | stageDecl
  ;

importDecl    : IMPORT STRING (AS ident)? ;
pipelineDecl  : PIPELINE ident body ;
paramDecl     : PARAM ident COLON typeRef (ASSIGN expr)? ;
resourcesDecl : RESOURCES ident block ;
clusterDecl   : CLUSTER ident block ;
stageDecl     : kind=(DATA | TRAIN | TUNE | SERVE | RL) ident body ;

body : LBRACE item* RBRACE ;

item
  : path ASSIGN expr        # assignItem
  | ident block             # blockItem
  | STOP WHEN expr          # stopItem
  ;

block : LBRACE (entry (COMMA? entry)* COMMA?)? RBRACE ;
entry : path COLON expr ;
path  : ident (DOT ident)* ;

typeRef : ident (LBRACK typeRef RBRACK)? ;

kernelDecl : KERNEL ident LPAREN (kparam (COMMA kparam)* COMMA?)? RPAREN ARROW typeRef kblock ;
kparam     : ident COLON typeRef ;

envDecl : ENV ident LBRACE envItem* RBRACE ;
envItem
  : STATE LBRACE (stateField (COMMA? stateField)* COMMA?)? RBRACE   # envState
  | ACTION expr                                                     # envAction
  | OBSERVE expr                                                    # envObserve
  | STEP LPAREN ident RPAREN kblock                                 # envStep
  | path ASSIGN expr                                                # envSetting
  ;
stateField : ident COLON typeRef ASSIGN expr ;

kblock : LBRACE kstmt* expr? RBRACE ;
kstmt
  : LET ident (COLON typeRef)? ASSIGN expr SEMI?   # letStmt
  | ident ASSIGN expr SEMI?                        # setStmt
  | REWARD expr SEMI?                              # rewardStmt
  | DONE expr SEMI?                                # doneStmt
  ;

expr
  : primary                                        # primaryExpr
  | expr DOT ident                                 # fieldExpr
  | expr LBRACK expr RBRACK                        # indexExpr
  | op=(MINUS | MINUS_NL) expr                     # negExpr
  | expr op=(STAR | SLASH | PERCENT) expr          # binaryExpr
  | expr op=(PLUS | MINUS) expr                    # binaryExpr
  | expr op=(LT | LE | GT | GE | EQ | NE) expr     # binaryExpr
  | NOT expr                                       # notExpr
  | expr op=AND expr                               # binaryExpr
  | expr op=OR expr                                # binaryExpr
  | expr op=PIPE expr                              # binaryExpr
  ;

primary
  : INT                                                   # intLit
  | FLOAT                                                 # floatLit
  | QUANTITY                                              # quantityLit
  | STRING                                                # stringLit
  | (TRUE | FALSE)                                        # boolLit
  | ident (DOT ident)? LPAREN (arg (COMMA arg)* COMMA?)? RPAREN   # callExpr
  | ident                                                 # nameExpr
  | (LPAREN | LPAREN_NL) expr RPAREN                      # parenExpr
  | (LBRACK | LBRACK_NL) (expr (COMMA expr)* COMMA?)? RBRACK   # listExpr
  | LBRACE (mapEntry (COMMA? mapEntry)* COMMA?)? RBRACE   # mapExpr
  | ifExpr                                                # ifPrimary
  ;

ifExpr   : IF expr kblock ELSE (kblock | ifExpr) ;
arg      : (ident COLON)? expr ;
mapEntry : (ident | STRING) COLON expr ;

// Keywords that may also be used as names (stage fields, operator parameters).
ident
  : ID | DATA | TRAIN | TUNE | SERVE | RL | ENV | PARAM | PIPELINE | RESOURCES
  | CLUSTER | IMPORT | AS | STOP | WHEN | KERNEL | STATE | ACTION | OBSERVE | STEP
  ;

IMPORT    : 'import' ;
AS        : 'as' ;
PIPELINE  : 'pipeline' ;
PARAM     : 'param' ;
RESOURCES : 'resources' ;
CLUSTER   : 'cluster' ;
KERNEL    : 'kernel' ;
ENV       : 'env' ;
DATA      : 'data' ;
TRAIN     : 'train' ;
TUNE      : 'tune' ;
SERVE     : 'serve' ;
RL        : 'rl' ;
STOP      : 'stop' ;
WHEN      : 'when' ;
STATE     : 'state' ;
ACTION    : 'action' ;
OBSERVE   : 'observe' ;
STEP      : 'step' ;
LET       : 'let' ;
IF        : 'if' ;
ELSE      : 'else' ;
REWARD    : 'reward' ;
DONE      : 'done' ;
TRUE      : 'true' ;
FALSE     : 'false' ;
AND       : 'and' ;
OR        : 'or' ;
NOT       : 'not' ;

ARROW    : '->' ;
EQ       : '==' ;
NE       : '!=' ;
LE       : '<=' ;
GE       : '>=' ;
LT       : '<' ;
GT       : '>' ;
ASSIGN   : '=' ;
COLON    : ':' ;
SEMI     : ';' ;
COMMA    : ',' ;
DOT      : '.' ;
PIPE     : '|' ;
PLUS     : '+' ;
MINUS    : '-' ;
STAR     : '*' ;
SLASH    : '/' ;
PERCENT  : '%' ;
LPAREN   : '(' ;
RPAREN   : ')' ;
LBRACK   : '[' ;
RBRACK   : ']' ;
LBRACE   : '{' ;
RBRACE   : '}' ;

// Retyped by the token source when the token starts a line: such a token
// begins a new expression and never continues the previous one.
LPAREN_NL : '\u0001' ;
LBRACK_NL : '\u0002' ;
MINUS_NL  : '\u0003' ;

FLOAT    : DIGITS '.' DIGITS EXPONENT? | DIGITS EXPONENT ;
QUANTITY : DIGITS ('.' DIGITS)? [a-zA-Z]+ ;
INT      : DIGITS ;
STRING   : '"' (ESCAPE | ~["\\\r\n])* '"' ;
UNTERMINATED_STRING : '"' (ESCAPE | ~["\\\r\n])* ;
ID       : [a-zA-Z_] [a-zA-Z_0-9]* ;

LINE_COMMENT  : '//' ~[\r\n]* -> channel(2) ;
BLOCK_COMMENT : '/*' .*? '*/' -> channel(2) ;
// A `/*` with no `*/` after it: one token to the end of the file (without it
// the lexer would retry the comment at every later `/*`, in quadratic time).
UNTERMINATED_COMMENT : '/*' ( ~'*' | '*'+ ~[*/] )* '*'* EOF ;
WS            : [ \t\r\n]+ -> skip ;
ERROR_CHAR    : . ;

fragment DIGITS   : [0-9] [0-9_]* ;
fragment EXPONENT : [eE] [+-]? DIGITS ;
fragment ESCAPE   : '\\' . ;
