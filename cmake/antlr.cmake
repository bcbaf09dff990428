# Generates the C++ lexer/parser from a .g4 grammar at build time.
find_program(ANTLR4_TOOL antlr4 REQUIRED)

function(mlp_antlr_generate target grammar namespace)
  get_filename_component(name ${grammar} NAME_WE)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/antlr)
  set(srcs ${out}/${name}Lexer.cpp ${out}/${name}Parser.cpp
           ${out}/${name}Visitor.cpp ${out}/${name}BaseVisitor.cpp)
  add_custom_command(
    OUTPUT ${srcs}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
    COMMAND ${ANTLR4_TOOL} -Dlanguage=Cpp -visitor -no-listener -package ${namespace}
            -o ${out} -Xexact-output-dir ${grammar}
    DEPENDS ${grammar}
    COMMENT "ANTLR4: generating ${name} parser"
    VERBATIM)
  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} SYSTEM PUBLIC ${out} /usr/include/antlr4-runtime)
  target_link_libraries(${target} PUBLIC antlr4_shared)
  # antlr 4.7.2 emits u8"" literals, which are char8_t in C++20.
  target_compile_options(${target} PRIVATE -w -fno-char8_t)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
