// The ORC LLJIT wrapper. One LLJIT per process; each compiled kernel lives in
// its own JITDylib, added through its own resource tracker, so unloading a
// kernel frees its code. Machine code comes from our own codegen step (not
// LLJIT's IR layer) so that the object file can be cached on disk: the cache
// key hashes the unoptimised IR, the target triple, the CPU name and
// features and the optimisation level.
#include "runtime/jit/jit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include <llvm/ADT/StringMap.h>
#include <llvm/Analysis/TargetLibraryInfo.h>
#include <llvm/ExecutionEngine/Orc/Core.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/BLAKE3.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>

#include "runtime/jit/lower.h"

namespace mlp::rt::jit {
namespace {

// Bumped whenever the lowering or the cache file format changes.
constexpr const char* kCacheFormat = "mlpc-jit-1";
constexpr char kMagic[8] = {'M', 'L', 'P', 'C', 'J', 'I', 'T', '1'};
constexpr size_t kHeader = 8 + 8 + 32;  // magic, payload size, BLAKE3 of the payload

std::string ToString(llvm::Error e) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << e;
  return os.str();
}

std::string Hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t k = 0; k < n; ++k) {
    s += d[p[k] >> 4];
    s += d[p[k] & 15];
  }
  return s;
}

std::array<uint8_t, 32> Blake3(llvm::StringRef data) {
  llvm::BLAKE3 h;
  h.update(data);
  auto r = h.final();
  std::array<uint8_t, 32> out;
  std::memcpy(out.data(), r.data(), 32);
  return out;
}

void InitNative() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

// The host functions JIT'd code may call: the libm functions the lowering
// and LLVM's own lowering of math intrinsics and `frem` emit, and the memory
// routines loop idioms become. Exported by address: no symbol search.
struct HostSymbol {
  const char* name;
  void* addr;
};
template <class F>
void* Addr(F* f) {
  return reinterpret_cast<void*>(f);
}
std::vector<HostSymbol> HostSymbols() {
  using F1 = float(float);
  using D1 = double(double);
  using F2 = float(float, float);
  using D2 = double(double, double);
  return {
      {"expf", Addr<F1>(::expf)},   {"exp", Addr<D1>(::exp)},       {"logf", Addr<F1>(::logf)},
      {"log", Addr<D1>(::log)},     {"sinf", Addr<F1>(::sinf)},     {"sin", Addr<D1>(::sin)},
      {"cosf", Addr<F1>(::cosf)},   {"cos", Addr<D1>(::cos)},       {"tanhf", Addr<F1>(::tanhf)},
      {"tanh", Addr<D1>(::tanh)},   {"powf", Addr<F2>(::powf)},     {"pow", Addr<D2>(::pow)},
      {"fmodf", Addr<F2>(::fmodf)}, {"fmod", Addr<D2>(::fmod)},     {"floorf", Addr<F1>(::floorf)},
      {"floor", Addr<D1>(::floor)}, {"sqrtf", Addr<F1>(::sqrtf)},   {"sqrt", Addr<D1>(::sqrt)},
      {"exp2f", Addr<F1>(::exp2f)}, {"exp2", Addr<D1>(::exp2)},     {"log2f", Addr<F1>(::log2f)},
      {"log2", Addr<D1>(::log2)},   {"log10f", Addr<F1>(::log10f)}, {"log10", Addr<D1>(::log10)},
      {"sincosf", Addr<void(float, float*, float*)>(::sincosf)},
      {"sincos", Addr<void(double, double*, double*)>(::sincos)},
      {"memcpy", Addr<void*(void*, const void*, size_t)>(::memcpy)},
      {"memmove", Addr<void*(void*, const void*, size_t)>(::memmove)},
      {"memset", Addr<void*(void*, int, size_t)>(::memset)},
  };
}

class Code : public ops::NativeCode {
 public:
  Code(llvm::orc::LLJIT* jit, llvm::orc::JITDylib* jd, llvm::orc::ResourceTrackerSP rt, std::mutex* mu)
      : jit_(jit), jd_(jd), rt_(std::move(rt)), mu_(mu) {}
  ~Code() override {
    std::lock_guard<std::mutex> lock(*mu_);
    if (auto e = rt_->remove()) llvm::consumeError(std::move(e));
    if (auto e = jit_->getExecutionSession().removeJITDylib(*jd_)) llvm::consumeError(std::move(e));
  }

 private:
  llvm::orc::LLJIT* jit_;
  llvm::orc::JITDylib* jd_;
  llvm::orc::ResourceTrackerSP rt_;
  std::mutex* mu_;
};

bool WriteFileAtomically(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (w <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    off += static_cast<size_t>(w);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace

struct Jit::Impl {
  JitOptions options;
  std::unique_ptr<llvm::orc::LLJIT> lljit;
  std::unique_ptr<llvm::TargetMachine> tm;
  std::string cpu, features, triple;
  std::mutex mu;  // codegen (one TargetMachine) and JITDylib creation/removal
  std::atomic<uint64_t> compiles{0}, hits{0}, rejects{0}, next_id{0};

  // Hash of the IR and the target: the cache file's name.
  std::string Key(const std::string& ir) const {
    std::string s = std::string(kCacheFormat) + (options.vector_math ? "+mvec" : "") + "\n" + triple + "\n" + cpu + "\n" + features + "\nO" +
                    std::to_string(options.opt_level) + "\n" + ir;
    auto h = Blake3(s);
    return Hex(h.data(), h.size());
  }

  void Optimize(llvm::Module& m) {
    llvm::LoopAnalysisManager lam;
    llvm::FunctionAnalysisManager fam;
    llvm::CGSCCAnalysisManager cgam;
    llvm::ModuleAnalysisManager mam;
    llvm::PipelineTuningOptions pto;
    pto.LoopVectorization = options.opt_level >= 2;
    pto.SLPVectorization = options.opt_level >= 2;
    // Vectorized loops are not unrolled or interleaved further: the loops are
    // memory- or libm-bound, and it halves the machine code to generate.
    pto.LoopUnrolling = false;
    pto.LoopInterleaving = false;
    llvm::PassBuilder pb(tm.get(), pto);
    llvm::TargetLibraryInfoImpl tlii{llvm::Triple(m.getTargetTriple())};
    if (options.vector_math) {
      tlii.addVectorizableFunctionsFromVecLib(llvm::TargetLibraryInfoImpl::LIBMVEC_X86, llvm::Triple(m.getTargetTriple()));
      // glibc 2.35 added tanh to libmvec; LLVM 16's preset predates it.
      static const llvm::VecDesc kTanh[] = {
          {"tanhf", "_ZGVbN4v_tanhf", llvm::ElementCount::getFixed(4)},
          {"tanhf", "_ZGVdN8v_tanhf", llvm::ElementCount::getFixed(8)},
          {"tanh", "_ZGVbN2v_tanh", llvm::ElementCount::getFixed(2)},
          {"tanh", "_ZGVdN4v_tanh", llvm::ElementCount::getFixed(4)},
      };
      tlii.addVectorizableFunctions(kTanh);
    }
    fam.registerPass([&] { return llvm::TargetLibraryAnalysis(tlii); });
    pb.registerModuleAnalyses(mam);
    pb.registerCGSCCAnalyses(cgam);
    pb.registerFunctionAnalyses(fam);
    pb.registerLoopAnalyses(lam);
    pb.crossRegisterProxies(lam, fam, cgam, mam);
    llvm::OptimizationLevel level = options.opt_level <= 0   ? llvm::OptimizationLevel::O0
                                    : options.opt_level == 1 ? llvm::OptimizationLevel::O1
                                    : options.opt_level == 2 ? llvm::OptimizationLevel::O2
                                                             : llvm::OptimizationLevel::O3;
    llvm::ModulePassManager mpm = level == llvm::OptimizationLevel::O0 ? pb.buildO0DefaultPipeline(level)
                                                                       : pb.buildPerModuleDefaultPipeline(level);
    mpm.run(m, mam);
  }

  bool Codegen(llvm::Module& m, std::string* obj, std::string* error) {
    llvm::SmallVector<char, 0> buf;
    llvm::raw_svector_ostream os(buf);
    llvm::legacy::PassManager pm;
    if (tm->addPassesToEmitFile(pm, os, nullptr, llvm::CGFT_ObjectFile)) {
      *error = "the target cannot emit object files";
      return false;
    }
    pm.run(m);
    obj->assign(buf.data(), buf.size());
    return true;
  }

  // The cached object for `key`, verified; empty when missing or unusable.
  std::string LoadCached(const std::string& key) {
    if (options.cache_dir.empty()) return {};
    std::string path = options.cache_dir + "/" + key + ".o";
    auto buf = llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
    if (!buf) return {};
    llvm::StringRef data = (*buf)->getBuffer();
    uint64_t size = 0;
    if (data.size() >= kHeader) std::memcpy(&size, data.data() + 8, 8);
    if (data.size() < kHeader || std::memcmp(data.data(), kMagic, 8) != 0 || size != data.size() - kHeader ||
        std::memcmp(Blake3(data.substr(kHeader)).data(), data.data() + 16, 32) != 0) {
      rejects.fetch_add(1);
      ::unlink(path.c_str());
      return {};
    }
    return data.substr(kHeader).str();
  }

  void Store(const std::string& key, const std::string& obj) {
    if (options.cache_dir.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(options.cache_dir, ec);
    std::string file(kMagic, 8);
    uint64_t size = obj.size();
    file.append(reinterpret_cast<const char*>(&size), 8);
    auto h = Blake3(obj);
    file.append(reinterpret_cast<const char*>(h.data()), 32);
    file += obj;
    WriteFileAtomically(options.cache_dir + "/" + key + ".o", file);  // a cache: failure only costs a recompile
  }
};

Jit::Jit() : impl_(std::make_unique<Impl>()) {}
Jit::~Jit() = default;

std::unique_ptr<Jit> Jit::Create(const JitOptions& options, std::string* error) {
  InitNative();
  std::unique_ptr<Jit> jit(new Jit());
  Impl& im = *jit->impl_;
  im.options = options;
  auto jtmb = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!jtmb) {
    if (error) *error = "LLVM cannot target this host: " + ToString(jtmb.takeError());
    return nullptr;
  }
  jtmb->setCodeGenOptLevel(options.opt_level >= 3   ? llvm::CodeGenOpt::Aggressive
                           : options.opt_level <= 0 ? llvm::CodeGenOpt::None
                                                    : llvm::CodeGenOpt::Default);
  im.cpu = jtmb->getCPU();
  im.features = jtmb->getFeatures().getString();
  im.triple = jtmb->getTargetTriple().str();
  auto tm = jtmb->createTargetMachine();
  if (!tm) {
    if (error) *error = "LLVM cannot create a target machine: " + ToString(tm.takeError());
    return nullptr;
  }
  im.tm = std::move(*tm);
  auto lljit = llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(std::move(*jtmb)).create();
  if (!lljit) {
    if (error) *error = "LLVM cannot start its JIT: " + ToString(lljit.takeError());
    return nullptr;
  }
  im.lljit = std::move(*lljit);
  llvm::orc::SymbolMap syms;
  for (const auto& s : HostSymbols()) {
    syms[im.lljit->mangleAndIntern(s.name)] = llvm::JITEvaluatedSymbol(
        llvm::pointerToJITTargetAddress(s.addr), llvm::JITSymbolFlags::Exported | llvm::JITSymbolFlags::Callable);
  }
  if (auto e = im.lljit->getMainJITDylib().define(llvm::orc::absoluteSymbols(std::move(syms)))) {
    if (error) *error = "LLVM cannot export the math functions: " + ToString(std::move(e));
    return nullptr;
  }
  if (options.vector_math) {
    // Vector variants (_ZGV...) come from glibc's libmvec; without it, loops stay scalar.
    auto mvec = llvm::orc::DynamicLibrarySearchGenerator::Load(
        "libmvec.so.1", im.lljit->getDataLayout().getGlobalPrefix(),
        [](const llvm::orc::SymbolStringPtr& name) { return (*name).startswith("_ZGV"); });
    if (mvec) {
      im.lljit->getMainJITDylib().addGenerator(std::move(*mvec));
    } else {
      llvm::consumeError(mvec.takeError());
      im.options.vector_math = false;
    }
  }
  return jit;
}

JitStats Jit::stats() const {
  JitStats s;
  s.compiles = impl_->compiles.load();
  s.cache_hits = impl_->hits.load();
  s.cache_rejects = impl_->rejects.load();
  return s;
}

const std::string& Jit::cpu() const { return impl_->cpu; }

std::unique_ptr<ops::NativeCode> Jit::Compile(const ops::CompiledKernel& k, std::string* error) {
  Impl& im = *impl_;
  auto ctx = std::make_unique<llvm::LLVMContext>();
  LoweredEntries entries;
  std::string why;
  std::unique_ptr<llvm::Module> m = LowerKernel(k, *ctx, &entries, &why);
  if (!m) {
    if (error) *error = why;
    return nullptr;
  }
  m->setTargetTriple(im.triple);
  m->setDataLayout(im.tm->createDataLayout());
  std::string ir;
  {
    llvm::raw_string_ostream os(ir);
    m->print(os, nullptr);
  }
  std::string key = im.Key(ir);
  std::string obj = im.LoadCached(key);
  std::lock_guard<std::mutex> lock(im.mu);
  if (!obj.empty()) {
    im.hits.fetch_add(1);
  } else {
    im.Optimize(*m);
    if (!im.Codegen(*m, &obj, &why)) {
      if (error) *error = why;
      return nullptr;
    }
    im.compiles.fetch_add(1);
    im.Store(key, obj);
  }
  auto& es = im.lljit->getExecutionSession();
  auto jd = es.createJITDylib("kernel." + std::to_string(im.next_id.fetch_add(1)) + "." + k.name());
  if (!jd) {
    if (error) *error = ToString(jd.takeError());
    return nullptr;
  }
  jd->addToLinkOrder(im.lljit->getMainJITDylib());
  llvm::orc::ResourceTrackerSP rt = jd->createResourceTracker();
  auto fail = [&](std::string msg) -> std::unique_ptr<ops::NativeCode> {
    if (auto e = rt->remove()) llvm::consumeError(std::move(e));
    if (auto e = es.removeJITDylib(*jd)) llvm::consumeError(std::move(e));
    if (error) *error = std::move(msg);
    return nullptr;
  };
  if (auto e = im.lljit->addObjectFile(rt, llvm::MemoryBuffer::getMemBufferCopy(obj, "kernel." + k.name()))) {
    return fail("kernel `" + k.name() + "`: cannot load its object: " + ToString(std::move(e)));
  }
  auto code = std::make_unique<Code>(im.lljit.get(), &*jd, rt, &im.mu);
  auto look = [&](const char* name, void** out) -> bool {
    auto addr = im.lljit->lookup(*jd, name);
    if (!addr) {
      why = ToString(addr.takeError());
      return false;
    }
    *out = addr->toPtr<void*>();
    return true;
  };
  void* p = nullptr;
  if (entries.call) {
    if (!look(kCallFn, &p)) return fail("kernel `" + k.name() + "`: " + why);
    code->fns.call = reinterpret_cast<decltype(code->fns.call)>(p);
  }
  if (entries.map) {
    if (!look(kMapFn, &p)) return fail("kernel `" + k.name() + "`: " + why);
    code->fns.map = reinterpret_cast<decltype(code->fns.map)>(p);
  }
  if (entries.filter) {
    if (!look(kFilterFn, &p)) return fail("kernel `" + k.name() + "`: " + why);
    code->fns.filter = reinterpret_cast<decltype(code->fns.filter)>(p);
  }
  if (entries.reduce) {
    if (!look(kReduceFn, &p)) return fail("kernel `" + k.name() + "`: " + why);
    code->fns.reduce = reinterpret_cast<decltype(code->fns.reduce)>(p);
  }
  return code;
}

std::string DefaultCacheDir() {
  if (const char* d = std::getenv("MLPC_JIT_CACHE"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/mlpc/jit";
  if (const char* d = std::getenv("HOME"); d && *d) return std::string(d) + "/.cache/mlpc/jit";
  return {};
}

Jit* Jit::Global() {
  static Jit* g = [] {
    JitOptions o;
    o.cache_dir = DefaultCacheDir();
    const char* vm = std::getenv("MLPC_JIT_VECTOR_MATH");
    o.vector_math = !(vm && std::string_view(vm) == "0");
    std::string error;
    return Create(o, &error).release();  // null when LLVM cannot target the host: kernels stay interpreted
  }();
  return g;
}

bool EmitIR(const ops::CompiledKernel& k, bool optimized, std::string* ir, std::string* error) {
  InitNative();
  llvm::LLVMContext ctx;
  LoweredEntries entries;
  std::unique_ptr<llvm::Module> m = LowerKernel(k, ctx, &entries, error);
  if (!m) return false;
  if (optimized) {
    Jit* jit = Jit::Global();
    if (!jit) {
      if (error) *error = "LLVM cannot target this host";
      return false;
    }
    m->setTargetTriple(jit->impl_->triple);
    m->setDataLayout(jit->impl_->tm->createDataLayout());
    std::lock_guard<std::mutex> lock(jit->impl_->mu);
    jit->impl_->Optimize(*m);
  }
  llvm::raw_string_ostream os(*ir);
  m->print(os, nullptr);
  return true;
}

bool EmitPlanIR(const plan::v1::Plan& plan, bool optimized, std::string* ir, std::string* error) {
  ops::KernelOptions options;
  options.jit = ops::JitMode::Off;
  std::unique_ptr<ops::KernelProgram> prog = ops::KernelProgram::Build(plan, error, options);
  if (!prog) return false;
  for (const auto& pk : plan.kernels()) {
    const ops::CompiledKernel* k = prog->Find(pk.name());
    if (!k) continue;
    std::string one;
    if (!EmitIR(*k, optimized, &one, error)) return false;
    *ir += "; kernel " + pk.name() + "\n" + one;
  }
  return true;
}

namespace {
// Creates the process's JIT on the first compile: a process that never runs a
// hot kernel never starts LLVM.
class LazyBackend : public ops::NativeBackend {
 public:
  std::unique_ptr<ops::NativeCode> Compile(const ops::CompiledKernel& k, std::string* error) override {
    Jit* j = Jit::Global();
    if (!j) {
      if (error) *error = "LLVM cannot target this host";
      return nullptr;
    }
    return j->Compile(k, error);
  }
};
}  // namespace

void Install() {
  static LazyBackend lazy;
  ops::SetNativeBackend(&lazy);
}

}  // namespace mlp::rt::jit
