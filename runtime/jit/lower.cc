// Lowering of the interpreter's typed nodes to LLVM IR. Every operation is the
// one the interpreter performs (runtime/ops/kernel_interp.cc), in the same
// order and at the same precision, so the tiers agree: f32 arithmetic in
// float, integers wrapping, f32 math through the same libm functions, no
// fast-math flags. A failed check (integer division by zero, a float that
// does not fit the integer it converts to) stores a site id into the status
// word the caller passed and yields 0, as the interpreter does; the driver
// reports a nonzero status and the interpreter re-runs the element to say
// what failed and where.
#include "runtime/jit/lower.h"

#include <map>
#include <set>
#include <vector>

#include <llvm/IR/Constants.h>
#include <llvm/IR/DerivedTypes.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include "runtime/ops/kernel_code.h"

namespace mlp::rt::jit {
namespace {

using ops::CompiledKernel;
using ops::ScalarType;
using ops::detail::Fn;
using ops::detail::KernelCode;
using ops::detail::Node;
using ops::detail::Op;
using ops::detail::T;

class Lowerer {
 public:
  Lowerer(llvm::LLVMContext& ctx, llvm::Module& m) : ctx_(ctx), m_(m), b_(ctx) {}

  std::string error;

  llvm::Type* Ty(T t) {
    switch (t) {
      case T::Bool: return b_.getInt1Ty();
      case T::I32: return b_.getInt32Ty();
      case T::I64:
      case T::LitInt: return b_.getInt64Ty();
      case T::F32: return b_.getFloatTy();
      case T::F64:
      case T::LitFloat: return b_.getDoubleTy();
      case T::Error: break;
    }
    return b_.getInt64Ty();
  }
  llvm::Type* Ty(ScalarType t) { return Ty(ops::detail::FromScalar(t)); }
  // How a value of `t` sits in memory: bools take a byte.
  llvm::Type* MemTy(ScalarType t) { return t == ScalarType::Bool ? b_.getInt8Ty() : Ty(t); }

  // The internal function of a kernel: (params..., ptr status) -> result.
  llvm::Function* KernelFn(const CompiledKernel& k) {
    if (auto it = fns_.find(&k); it != fns_.end()) return it->second;
    std::vector<llvm::Type*> params;
    for (ScalarType p : k.params()) params.push_back(Ty(p));
    params.push_back(b_.getPtrTy());
    auto* fty = llvm::FunctionType::get(Ty(k.result()), params, false);
    auto* f = llvm::Function::Create(fty, llvm::GlobalValue::InternalLinkage, "kernel." + k.name(), m_);
    f->addFnAttr(llvm::Attribute::NoUnwind);
    f->addFnAttr(llvm::Attribute::WillReturn);
    f->addParamAttr(static_cast<unsigned>(k.params().size()), llvm::Attribute::NoCapture);
    fns_[&k] = f;
    pending_.push_back(&k);
    return f;
  }

  // Emits the bodies of every kernel function requested so far (callees
  // request theirs while being emitted).
  bool EmitPending() {
    while (!pending_.empty() && error.empty()) {
      const CompiledKernel* k = pending_.back();
      pending_.pop_back();
      llvm::Function* f = fns_[k];
      auto* entry = llvm::BasicBlock::Create(ctx_, "entry", f);
      b_.SetInsertPoint(entry);
      Frame fr;
      fr.code = &k->code();
      fr.slots.assign(fr.code->slots, nullptr);
      for (size_t p = 0; p < k->params().size(); ++p) fr.slots[p] = f->getArg(static_cast<unsigned>(p));
      fr.status = f->getArg(static_cast<unsigned>(k->params().size()));
      llvm::Value* v = Expr(fr, fr.code->root);
      if (!error.empty()) return false;
      b_.CreateRet(v);
    }
    return error.empty();
  }

  // Evaluates an env step inline: slots from `args`, outputs to `out`.
  bool EmitStep(const CompiledKernel& k, const std::vector<llvm::Value*>& args, llvm::Value* status,
                std::vector<llvm::Value*>* outs) {
    Frame fr;
    fr.code = &k.code();
    fr.slots.assign(fr.code->slots, nullptr);
    for (size_t p = 0; p < args.size(); ++p) fr.slots[p] = args[p];
    fr.status = status;
    Expr(fr, fr.code->root);
    if (!error.empty()) return false;
    for (uint32_t s : fr.code->outputs) {
      if (s >= fr.slots.size() || !fr.slots[s]) {
        error = "env step `" + k.name() + "`: output slot " + std::to_string(s) + " has no value";
        return false;
      }
      outs->push_back(fr.slots[s]);
    }
    return true;
  }

  llvm::IRBuilder<>& b() { return b_; }

 private:
  struct Frame {
    const KernelCode* code = nullptr;
    std::vector<llvm::Value*> slots;
    llvm::Value* status = nullptr;  // ptr to i32
  };

  llvm::LLVMContext& ctx_;
  llvm::Module& m_;
  llvm::IRBuilder<> b_;
  std::map<const CompiledKernel*, llvm::Function*> fns_;
  std::vector<const CompiledKernel*> pending_;
  uint32_t sites_ = 0;

  llvm::Value* Fail(const std::string& what) {
    if (error.empty()) error = what;
    return llvm::UndefValue::get(b_.getInt64Ty());
  }

  // status = status != 0 ? status : (failed ? site : 0)
  void Check(Frame& fr, llvm::Value* failed) {
    llvm::Value* site = b_.getInt32(++sites_);
    llvm::Value* st = b_.CreateLoad(b_.getInt32Ty(), fr.status);
    llvm::Value* fresh = b_.CreateSelect(failed, site, b_.getInt32(0));
    llvm::Value* keep = b_.CreateICmpNE(st, b_.getInt32(0));
    b_.CreateStore(b_.CreateSelect(keep, st, fresh), fr.status);
  }

  llvm::Value* Const(const Node& n) {
    switch (n.type) {
      case T::Bool: return b_.getInt1(n.value.i != 0);
      case T::I32: return b_.getInt32(static_cast<uint32_t>(n.value.i));
      case T::I64:
      case T::LitInt: return b_.getInt64(static_cast<uint64_t>(n.value.i));
      case T::F32: return llvm::ConstantFP::get(b_.getFloatTy(), static_cast<double>(static_cast<float>(n.value.f)));
      case T::F64:
      case T::LitFloat: return llvm::ConstantFP::get(b_.getDoubleTy(), n.value.f);
      case T::Error: break;
    }
    return Fail("a constant of no type");
  }

  llvm::Value* Expr(Frame& fr, uint32_t id) {
    if (!error.empty()) return llvm::UndefValue::get(b_.getInt64Ty());
    if (id >= fr.code->nodes.size()) return Fail("node index out of range");
    const Node& n = fr.code->nodes[id];
    switch (n.op) {
      case Op::Const: return Const(n);
      case Op::Var:
        if (n.slot >= fr.slots.size() || !fr.slots[n.slot]) return Fail("a variable read before it is set");
        return fr.slots[n.slot];
      case Op::Let: {
        llvm::Value* v = Expr(fr, n.a);
        if (n.slot >= fr.slots.size()) return Fail("a let slot out of range");
        fr.slots[n.slot] = v;
        return v;
      }
      case Op::Block:
        for (uint32_t s = 0; s < n.count; ++s) Expr(fr, fr.code->lists[n.list + s]);
        return Expr(fr, n.a);
      case Op::If: {
        llvm::Value* c = Expr(fr, n.a);
        llvm::Function* f = b_.GetInsertBlock()->getParent();
        auto* then_bb = llvm::BasicBlock::Create(ctx_, "then", f);
        auto* else_bb = llvm::BasicBlock::Create(ctx_, "else", f);
        auto* join = llvm::BasicBlock::Create(ctx_, "join", f);
        b_.CreateCondBr(c, then_bb, else_bb);
        b_.SetInsertPoint(then_bb);
        llvm::Value* tv = Expr(fr, n.b);
        llvm::BasicBlock* then_end = b_.GetInsertBlock();
        b_.CreateBr(join);
        b_.SetInsertPoint(else_bb);
        llvm::Value* ev = Expr(fr, n.c);
        llvm::BasicBlock* else_end = b_.GetInsertBlock();
        b_.CreateBr(join);
        b_.SetInsertPoint(join);
        if (!error.empty()) return tv;
        llvm::PHINode* phi = b_.CreatePHI(Ty(n.type), 2);
        phi->addIncoming(tv, then_end);
        phi->addIncoming(ev, else_end);
        return phi;
      }
      case Op::And:
      case Op::Or: {
        // Short-circuit, as the interpreter: the right side may hold a check.
        llvm::Value* a = Expr(fr, n.a);
        llvm::BasicBlock* a_end = b_.GetInsertBlock();
        llvm::Function* f = a_end->getParent();
        auto* rhs = llvm::BasicBlock::Create(ctx_, n.op == Op::And ? "and.rhs" : "or.rhs", f);
        auto* join = llvm::BasicBlock::Create(ctx_, "logic.join", f);
        if (n.op == Op::And) {
          b_.CreateCondBr(a, rhs, join);
        } else {
          b_.CreateCondBr(a, join, rhs);
        }
        b_.SetInsertPoint(rhs);
        llvm::Value* bv = Expr(fr, n.b);
        llvm::BasicBlock* rhs_end = b_.GetInsertBlock();
        b_.CreateBr(join);
        b_.SetInsertPoint(join);
        if (!error.empty()) return a;
        llvm::PHINode* phi = b_.CreatePHI(b_.getInt1Ty(), 2);
        phi->addIncoming(b_.getInt1(n.op == Op::Or), a_end);
        phi->addIncoming(bv, rhs_end);
        return phi;
      }
      case Op::Not: return b_.CreateNot(Expr(fr, n.a));
      case Op::Neg: {
        llvm::Value* x = Expr(fr, n.a);
        if (ops::detail::IsFloatT(n.type)) return b_.CreateFNeg(x);
        return b_.CreateSub(llvm::ConstantInt::get(x->getType(), 0), x);  // wraps
      }
      case Op::Add:
      case Op::Sub:
      case Op::Mul:
      case Op::Div:
      case Op::Mod: {
        llvm::Value* x = Expr(fr, n.a);
        llvm::Value* y = Expr(fr, n.b);
        return Arith(fr, n, x, y);
      }
      case Op::Lt:
      case Op::Le:
      case Op::Gt:
      case Op::Ge:
      case Op::Eq:
      case Op::Ne: {
        llvm::Value* x = Expr(fr, n.a);
        llvm::Value* y = Expr(fr, n.b);
        if (ops::detail::IsFloatT(n.in)) {
          // Ordered comparisons are false on NaN; != is true (unordered or not equal).
          switch (n.op) {
            case Op::Lt: return b_.CreateFCmpOLT(x, y);
            case Op::Le: return b_.CreateFCmpOLE(x, y);
            case Op::Gt: return b_.CreateFCmpOGT(x, y);
            case Op::Ge: return b_.CreateFCmpOGE(x, y);
            case Op::Eq: return b_.CreateFCmpOEQ(x, y);
            default: return b_.CreateFCmpUNE(x, y);
          }
        }
        switch (n.op) {
          case Op::Lt: return b_.CreateICmpSLT(x, y);
          case Op::Le: return b_.CreateICmpSLE(x, y);
          case Op::Gt: return b_.CreateICmpSGT(x, y);
          case Op::Ge: return b_.CreateICmpSGE(x, y);
          case Op::Eq: return b_.CreateICmpEQ(x, y);
          default: return b_.CreateICmpNE(x, y);
        }
      }
      case Op::Convert: return Convert(fr, n, Expr(fr, n.a));
      case Op::Builtin: {
        llvm::Value* x = Expr(fr, n.a);
        llvm::Value* y = n.count > 1 ? Expr(fr, n.b) : nullptr;
        llvm::Value* z = n.count > 2 ? Expr(fr, n.c) : nullptr;
        return Builtin(n, x, y, z);
      }
      case Op::Call: {
        if (!n.callee) return Fail("a call without a callee");
        std::vector<llvm::Value*> args;
        for (uint32_t a = 0; a < n.count; ++a) args.push_back(Expr(fr, fr.code->lists[n.list + a]));
        args.push_back(fr.status);
        llvm::Function* callee = KernelFn(*n.callee);
        if (!error.empty()) return llvm::UndefValue::get(Ty(n.type));
        return b_.CreateCall(callee, args);
      }
    }
    return Fail("an unknown node");
  }

  llvm::Value* Arith(Frame& fr, const Node& n, llvm::Value* x, llvm::Value* y) {
    if (ops::detail::IsFloatT(n.in)) {
      switch (n.op) {
        case Op::Add: return b_.CreateFAdd(x, y);
        case Op::Sub: return b_.CreateFSub(x, y);
        case Op::Mul: return b_.CreateFMul(x, y);
        case Op::Div: return b_.CreateFDiv(x, y);
        default: return b_.CreateFRem(x, y);  // fmodf / fmod, as std::fmod
      }
    }
    switch (n.op) {
      case Op::Add: return b_.CreateAdd(x, y);
      case Op::Sub: return b_.CreateSub(x, y);
      case Op::Mul: return b_.CreateMul(x, y);
      default: break;
    }
    // Division: by 0 fails and gives 0; by -1 negates (MIN / -1 wraps) and a
    // remainder by -1 is 0, instead of the hardware trap.
    llvm::Type* t = x->getType();
    auto* zero = llvm::ConstantInt::get(t, 0);
    auto* one = llvm::ConstantInt::get(t, 1);
    auto* minus_one = llvm::ConstantInt::getSigned(t, -1);
    llvm::Value* is_zero = b_.CreateICmpEQ(y, zero);
    llvm::Value* is_m1 = b_.CreateICmpEQ(y, minus_one);
    Check(fr, is_zero);
    llvm::Value* safe = b_.CreateSelect(b_.CreateOr(is_zero, is_m1), one, y);
    llvm::Value* q = n.op == Op::Div ? b_.CreateSDiv(x, safe) : b_.CreateSRem(x, safe);
    llvm::Value* at_m1 = n.op == Op::Div ? b_.CreateSub(zero, x) : static_cast<llvm::Value*>(zero);
    return b_.CreateSelect(is_zero, zero, b_.CreateSelect(is_m1, at_m1, q));
  }

  llvm::Value* Convert(Frame& fr, const Node& n, llvm::Value* x) {
    bool from_float = ops::detail::IsFloatT(n.in);
    bool from_f32 = n.in == T::F32;
    auto as_double = [&](llvm::Value* v) -> llvm::Value* {
      if (from_float) return from_f32 ? b_.CreateFPExt(v, b_.getDoubleTy()) : v;
      // Integers go through i64 then double, as the interpreter's slots do.
      if (v->getType() != b_.getInt64Ty()) v = b_.CreateSExt(v, b_.getInt64Ty());
      return b_.CreateSIToFP(v, b_.getDoubleTy());
    };
    switch (n.type) {
      case T::F32:
        if (from_f32) return x;
        if (from_float) return b_.CreateFPTrunc(x, b_.getFloatTy());
        // An integer rounds to f32 once, as the interpreter does.
        if (x->getType() != b_.getInt64Ty()) x = b_.CreateSExt(x, b_.getInt64Ty());
        return b_.CreateSIToFP(x, b_.getFloatTy());
      case T::F64:
      case T::LitFloat: return as_double(x);
      case T::I32:
      case T::I64:
      case T::LitInt: {
        llvm::Type* to = Ty(n.type);
        if (!from_float) {
          if (x->getType() == to) return x;
          return n.type == T::I32 ? b_.CreateTrunc(x, to) : b_.CreateSExt(x, to);
        }
        bool i32 = n.type == T::I32;
        llvm::Value* v = as_double(x);
        double lo = i32 ? -2147483649.0 : -9223372036854775808.0;
        double hi = i32 ? 2147483648.0 : 9223372036854775808.0;
        auto* dlo = llvm::ConstantFP::get(b_.getDoubleTy(), lo);
        auto* dhi = llvm::ConstantFP::get(b_.getDoubleTy(), hi);
        llvm::Value* ok = b_.CreateAnd(b_.CreateFCmpOGT(v, dlo), b_.CreateFCmpOLT(v, dhi));
        if (!i32) ok = b_.CreateOr(ok, b_.CreateFCmpOEQ(v, dlo));
        Check(fr, b_.CreateNot(ok));
        llvm::Value* safe = b_.CreateSelect(ok, v, llvm::ConstantFP::get(b_.getDoubleTy(), 0.0));
        return b_.CreateFPToSI(safe, to);
      }
      default: break;
    }
    return Fail("a conversion to no type");
  }

  llvm::Value* Libm(const char* name, llvm::Type* t, llvm::Value* x) {
    llvm::FunctionCallee f = m_.getOrInsertFunction(name, llvm::FunctionType::get(t, {t}, false));
    if (auto* fn = llvm::dyn_cast<llvm::Function>(f.getCallee())) {
      fn->setDoesNotThrow();
      fn->setWillReturn();
      fn->setDoesNotAccessMemory();
    }
    return b_.CreateCall(f, {x});
  }

  llvm::Value* Intrinsic(llvm::Intrinsic::ID id, llvm::Value* x, llvm::Value* y = nullptr) {
    if (y) return b_.CreateBinaryIntrinsic(id, x, y);
    return b_.CreateUnaryIntrinsic(id, x);
  }

  llvm::Value* Builtin(const Node& n, llvm::Value* x, llvm::Value* y, llvm::Value* z) {
    bool fl = ops::detail::IsFloatT(n.in);
    bool f32 = n.in == T::F32;
    auto less = [&](llvm::Value* a, llvm::Value* c) { return fl ? b_.CreateFCmpOLT(a, c) : b_.CreateICmpSLT(a, c); };
    switch (n.fn) {
      case Fn::Exp: return Intrinsic(llvm::Intrinsic::exp, x);
      case Fn::Log: return Intrinsic(llvm::Intrinsic::log, x);
      case Fn::Sqrt: return Intrinsic(llvm::Intrinsic::sqrt, x);
      case Fn::Sin: return Intrinsic(llvm::Intrinsic::sin, x);
      case Fn::Cos: return Intrinsic(llvm::Intrinsic::cos, x);
      case Fn::Floor: return Intrinsic(llvm::Intrinsic::floor, x);
      case Fn::Pow: return Intrinsic(llvm::Intrinsic::pow, x, y);
      case Fn::Tanh: return Libm(f32 ? "tanhf" : "tanh", x->getType(), x);
      case Fn::Abs:
        if (fl) return Intrinsic(llvm::Intrinsic::fabs, x);
        return b_.CreateSelect(b_.CreateICmpSLT(x, llvm::ConstantInt::get(x->getType(), 0)),
                               b_.CreateSub(llvm::ConstantInt::get(x->getType(), 0), x), x);
      // The interpreter's comparisons, NaN cases included: min(a, b) = b < a ? b : a.
      case Fn::Min: return b_.CreateSelect(less(y, x), y, x);
      case Fn::Max: return b_.CreateSelect(less(x, y), y, x);
      case Fn::Clamp: {
        llvm::Value* v = b_.CreateSelect(less(x, y), y, x);
        return b_.CreateSelect(less(z, v), z, v);
      }
    }
    return Fail("an unknown builtin");
  }
};

// Driver helpers.
llvm::Value* LoadElem(llvm::IRBuilder<>& b, Lowerer& lw, ScalarType t, llvm::Value* base, llvm::Value* i) {
  llvm::Type* mt = lw.MemTy(t);
  llvm::Value* v = b.CreateLoad(mt, b.CreateInBoundsGEP(mt, base, i));
  return t == ScalarType::Bool ? b.CreateICmpNE(v, b.getInt8(0)) : v;
}
void StoreElem(llvm::IRBuilder<>& b, Lowerer& lw, ScalarType t, llvm::Value* v, llvm::Value* base, llvm::Value* i) {
  llvm::Type* mt = lw.MemTy(t);
  if (t == ScalarType::Bool) v = b.CreateZExt(v, b.getInt8Ty());
  b.CreateStore(v, b.CreateInBoundsGEP(mt, base, i));
}
// An 8-byte slot to a value: floats are doubles (an f32 widened exactly), integers int64.
llvm::Value* FromSlot(llvm::IRBuilder<>& b, ScalarType t, llvm::Value* slot_ptr) {
  switch (t) {
    case ScalarType::F32: return b.CreateFPTrunc(b.CreateLoad(b.getDoubleTy(), slot_ptr), b.getFloatTy());
    case ScalarType::F64: return b.CreateLoad(b.getDoubleTy(), slot_ptr);
    case ScalarType::I32: return b.CreateTrunc(b.CreateLoad(b.getInt64Ty(), slot_ptr), b.getInt32Ty());
    case ScalarType::I64: return b.CreateLoad(b.getInt64Ty(), slot_ptr);
    case ScalarType::Bool: return b.CreateICmpNE(b.CreateLoad(b.getInt64Ty(), slot_ptr), b.getInt64(0));
  }
  return nullptr;
}
void ToSlot(llvm::IRBuilder<>& b, ScalarType t, llvm::Value* v, llvm::Value* slot_ptr) {
  switch (t) {
    case ScalarType::F32: b.CreateStore(b.CreateFPExt(v, b.getDoubleTy()), slot_ptr); return;
    case ScalarType::F64: b.CreateStore(v, slot_ptr); return;
    case ScalarType::I32: b.CreateStore(b.CreateSExt(v, b.getInt64Ty()), slot_ptr); return;
    case ScalarType::I64: b.CreateStore(v, slot_ptr); return;
    case ScalarType::Bool: b.CreateStore(b.CreateZExt(v, b.getInt64Ty()), slot_ptr); return;
  }
}

// A counted loop `for (i = 0; i < n; ++i) body(i)` in `f`, from the current
// block; returns with the builder after the loop.
template <class Body>
void Loop(llvm::IRBuilder<>& b, llvm::Function* f, llvm::Value* n, Body body) {
  llvm::LLVMContext& ctx = f->getContext();
  llvm::BasicBlock* pre = b.GetInsertBlock();
  auto* head = llvm::BasicBlock::Create(ctx, "loop", f);
  auto* exit = llvm::BasicBlock::Create(ctx, "done", f);
  b.CreateCondBr(b.CreateICmpSGT(n, b.getInt64(0)), head, exit);
  b.SetInsertPoint(head);
  llvm::PHINode* i = b.CreatePHI(b.getInt64Ty(), 2, "i");
  i->addIncoming(b.getInt64(0), pre);
  body(i);
  llvm::Value* next = b.CreateAdd(i, b.getInt64(1), "", /*HasNUW=*/true, /*HasNSW=*/true);
  i->addIncoming(next, b.GetInsertBlock());
  b.CreateCondBr(b.CreateICmpSLT(next, n), head, exit);
  b.SetInsertPoint(exit);
}

llvm::Function* Entry(llvm::Module& m, const char* name, llvm::Type* ret, std::vector<llvm::Type*> params) {
  auto* f = llvm::Function::Create(llvm::FunctionType::get(ret, params, false), llvm::GlobalValue::ExternalLinkage,
                                   name, m);
  f->addFnAttr(llvm::Attribute::NoUnwind);
  return f;
}

}  // namespace

std::unique_ptr<llvm::Module> LowerKernel(const ops::CompiledKernel& k, llvm::LLVMContext& ctx,
                                          LoweredEntries* entries, std::string* error) {
  auto m = std::make_unique<llvm::Module>("mlp." + k.name(), ctx);
  Lowerer lw(ctx, *m);
  auto& b = lw.b();
  llvm::Type* ptr = b.getPtrTy();
  llvm::Type* i32 = b.getInt32Ty();
  llvm::Type* i64 = b.getInt64Ty();
  LoweredEntries got;
  const bool step = !k.outputs().empty();

  // mlp_call(ptr args, ptr out) -> status, on 8-byte slots.
  {
    llvm::Function* f = Entry(*m, kCallFn, i32, {ptr, ptr});
    b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", f));
    llvm::Value* st = b.CreateAlloca(i32);
    b.CreateStore(b.getInt32(0), st);
    std::vector<llvm::Value*> args;
    for (size_t p = 0; p < k.params().size(); ++p) {
      args.push_back(FromSlot(b, k.params()[p], b.CreateConstInBoundsGEP1_64(i64, f->getArg(0), p)));
    }
    if (step) {
      std::vector<llvm::Value*> outs;
      if (!lw.EmitStep(k, args, st, &outs)) {
        if (error) *error = lw.error;
        return nullptr;
      }
      for (size_t o = 0; o < outs.size() && o < k.outputs().size(); ++o) {
        ToSlot(b, k.outputs()[o], outs[o], b.CreateConstInBoundsGEP1_64(i64, f->getArg(1), o));
      }
    } else {
      args.push_back(st);
      llvm::Value* r = b.CreateCall(lw.KernelFn(k), args);
      ToSlot(b, k.result(), r, f->getArg(1));
    }
    b.CreateRet(b.CreateLoad(i32, st));
    got.call = true;
  }

  if (!step) {
    // mlp_map(ptr args, ptr out, i64 n) -> status (nonzero when any element failed).
    {
      llvm::Function* f = Entry(*m, kMapFn, i32, {ptr, ptr, i64});
      f->addParamAttr(1, llvm::Attribute::NoAlias);
      b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", f));
      llvm::Value* st = b.CreateAlloca(i32);
      llvm::Value* acc = b.CreateAlloca(i32);
      b.CreateStore(b.getInt32(0), acc);
      std::vector<llvm::Value*> bases;
      for (size_t p = 0; p < k.params().size(); ++p) {
        bases.push_back(b.CreateLoad(ptr, b.CreateConstInBoundsGEP1_64(ptr, f->getArg(0), p)));
      }
      Loop(b, f, f->getArg(2), [&](llvm::Value* i) {
        b.CreateStore(b.getInt32(0), st);
        std::vector<llvm::Value*> args;
        for (size_t p = 0; p < k.params().size(); ++p) args.push_back(LoadElem(b, lw, k.params()[p], bases[p], i));
        args.push_back(st);
        llvm::Value* r = b.CreateCall(lw.KernelFn(k), args);
        StoreElem(b, lw, k.result(), r, f->getArg(1), i);
        // An or-reduction of the per-element status keeps the loop vectorizable.
        b.CreateStore(b.CreateOr(b.CreateLoad(i32, acc), b.CreateLoad(i32, st)), acc);
      });
      b.CreateRet(b.CreateLoad(i32, acc));
      got.map = true;
    }
    if ((k.options().drivers & ops::kDriverFilter) && k.params().size() == 1 && k.result() == ScalarType::Bool) {
      // mlp_filter(ptr in, ptr out, i64 n, ptr kept) -> status: branch-free compaction.
      ScalarType t = k.params()[0];
      llvm::Function* f = Entry(*m, kFilterFn, i32, {ptr, ptr, i64, ptr});
      f->addParamAttr(1, llvm::Attribute::NoAlias);
      b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", f));
      llvm::Value* st = b.CreateAlloca(i32);
      llvm::Value* acc = b.CreateAlloca(i32);
      llvm::Value* j = b.CreateAlloca(i64);
      b.CreateStore(b.getInt32(0), acc);
      b.CreateStore(b.getInt64(0), j);
      llvm::Type* mt = lw.MemTy(t);
      Loop(b, f, f->getArg(2), [&](llvm::Value* i) {
        b.CreateStore(b.getInt32(0), st);
        llvm::Value* raw = b.CreateLoad(mt, b.CreateInBoundsGEP(mt, f->getArg(0), i));
        llvm::Value* x = t == ScalarType::Bool ? b.CreateICmpNE(raw, b.getInt8(0)) : raw;
        llvm::Value* keep = b.CreateCall(lw.KernelFn(k), {x, st});
        llvm::Value* jv = b.CreateLoad(i64, j);
        b.CreateStore(raw, b.CreateInBoundsGEP(mt, f->getArg(1), jv));
        b.CreateStore(b.CreateAdd(jv, b.CreateZExt(keep, i64)), j);
        b.CreateStore(b.CreateOr(b.CreateLoad(i32, acc), b.CreateLoad(i32, st)), acc);
      });
      b.CreateStore(b.CreateLoad(i64, j), f->getArg(3));
      b.CreateRet(b.CreateLoad(i32, acc));
      got.filter = true;
    }
    if ((k.options().drivers & ops::kDriverReduce) && k.params().size() == 1 && k.result() != ScalarType::Bool) {
      // mlp_reduce(ptr in, i64 n, ptr acc) -> status: a sum in element order.
      ScalarType t = k.params()[0];
      llvm::Function* f = Entry(*m, kReduceFn, i32, {ptr, i64, ptr});
      b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", f));
      llvm::Value* st = b.CreateAlloca(i32);
      llvm::Value* acc = b.CreateAlloca(i32);
      llvm::Value* sum = b.CreateAlloca(lw.Ty(k.result()));
      b.CreateStore(b.getInt32(0), acc);
      b.CreateStore(b.CreateLoad(lw.Ty(k.result()), f->getArg(2)), sum);
      bool fl = k.result() == ScalarType::F32 || k.result() == ScalarType::F64;
      Loop(b, f, f->getArg(1), [&](llvm::Value* i) {
        b.CreateStore(b.getInt32(0), st);
        llvm::Value* x = LoadElem(b, lw, t, f->getArg(0), i);
        llvm::Value* r = b.CreateCall(lw.KernelFn(k), {x, st});
        llvm::Value* s = b.CreateLoad(lw.Ty(k.result()), sum);
        b.CreateStore(fl ? b.CreateFAdd(s, r) : b.CreateAdd(s, r), sum);
        b.CreateStore(b.CreateOr(b.CreateLoad(i32, acc), b.CreateLoad(i32, st)), acc);
      });
      b.CreateStore(b.CreateLoad(lw.Ty(k.result()), sum), f->getArg(2));
      b.CreateRet(b.CreateLoad(i32, acc));
      got.reduce = true;
    }
  }
  if (!lw.EmitPending()) {
    if (error) *error = lw.error;
    return nullptr;
  }
  std::string verify;
  llvm::raw_string_ostream os(verify);
  if (llvm::verifyModule(*m, &os)) {
    if (error) *error = "kernel `" + k.name() + "`: invalid IR (a bug in mlpc): " + os.str();
    return nullptr;
  }
  if (entries) *entries = got;
  return m;
}

}  // namespace mlp::rt::jit
