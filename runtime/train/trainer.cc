// The trainer plugin: models from the stdlib on the LibTorch C++ frontend, the
// training loop, and model archives. The only file that includes torch; its
// one exported symbol is mlp_trainer_api_v2 (see trainer.h).
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#ifdef MLP_WITH_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cmath>
#include <thread>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/train/trainer.h"

namespace mlp::rt::train {
namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;
using Json = nlohmann::json;

// Errors inside the trainer are exceptions; the API functions turn them into messages.
struct TrainError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A failure of the gang rather than of the input (a peer died, the rendezvous
// timed out): a restart of the gang can succeed.
struct CommError : TrainError {
  using TrainError::TrainError;
};

// The first line of an exception's message (LibTorch appends a C++ backtrace).
std::string FirstLine(std::string m) {
  if (auto nl = m.find("\nException raised from"); nl != std::string::npos) m.resize(nl);
  return m;
}

// ---- data-parallel communication

// c10d's store interface over the DistSpec's callbacks (the job's store at the
// head). Gloo's rendezvous needs set, get (waiting) and wait; add is there for
// completeness. Waiting polls, because the head's store does not block.
class HookStore : public c10d::Store {
 public:
  explicit HookStore(const DistSpec& d) : Store(std::chrono::milliseconds(d.timeout_ms)), d_(d) {}

  void set(const std::string& key, const std::vector<uint8_t>& value) override {
    std::string error;
    if (!d_.set(key, std::string(value.begin(), value.end()), &error)) throw CommError("rendezvous: " + error);
  }
  std::vector<uint8_t> get(const std::string& key) override {
    std::string v = Wait(key, timeout_);
    return std::vector<uint8_t>(v.begin(), v.end());
  }
  int64_t add(const std::string& key, int64_t delta) override {
    std::string error;
    int64_t sum = 0;
    if (!d_.add(key, delta, &sum, &error)) throw CommError("rendezvous: " + error);
    return sum;
  }
  bool deleteKey(const std::string&) override { return false; }
  bool check(const std::vector<std::string>& keys) override {
    for (const auto& k : keys) {
      std::string v, error;
      bool found = false;
      if (!d_.get(k, &v, &found, &error)) throw CommError("rendezvous: " + error);
      if (!found) return false;
    }
    return true;
  }
  int64_t getNumKeys() override { throw CommError("rendezvous: the store does not count keys"); }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    for (const auto& k : keys) Wait(k, timeout);
  }

 private:
  std::string Wait(const std::string& key, std::chrono::milliseconds timeout) {
    if (timeout.count() <= 0) timeout = std::chrono::milliseconds(d_.timeout_ms);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = std::chrono::milliseconds(1);
    while (true) {
      std::string v, error;
      bool found = false;
      if (!d_.get(key, &v, &found, &error)) throw CommError("rendezvous: " + error);
      if (found) return v;
      if (std::chrono::steady_clock::now() > deadline) {
        throw CommError("rendezvous: no answer from the other ranks within " + std::to_string(timeout.count()) +
                        " ms (waiting for `" + key + "`)");
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(20));
    }
  }

  DistSpec d_;
};

// The ranks' process group; every collective is a no-op on one rank.
struct Comm {
  int rank = 0, world = 1;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  torch::Device device{torch::kCPU};  // where collectives run (NCCL needs CUDA tensors)

  static Comm Connect(const DistSpec& d, torch::Device device) {
    Comm c;
    c.rank = d.rank;
    c.world = d.world;
    c.device = device;
    const bool gpu = device.is_cuda();
    if (d.world <= 1) return c;
    if (d.rank < 0 || d.rank >= d.world) throw TrainError("rank " + std::to_string(d.rank) + " of " + std::to_string(d.world));
    if (!d.set || !d.get || !d.add) throw TrainError("data-parallel training needs the job's store (a cluster run)");
    auto store = c10::make_intrusive<HookStore>(d);
    try {
#ifdef MLP_WITH_CUDA
      if (gpu) {
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = std::chrono::milliseconds(d.timeout_ms);
        c.pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, d.rank, d.world, opts);
        return c;
      }
#endif
      (void)gpu;
      auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(d.timeout_ms));
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(d.host));
      opts->threads = 1;
      c.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, d.rank, d.world, opts);
    } catch (const CommError&) {
      throw;
    } catch (const std::exception& e) {
      throw CommError("connecting the " + std::to_string(d.world) + " ranks: " + FirstLine(e.what()));
    }
    return c;
  }

  void AllReduce(at::Tensor t, c10d::ReduceOp op = c10d::ReduceOp::SUM) {
    if (world <= 1) return;
    std::vector<at::Tensor> v{t.device() == device ? t : t.to(device)};
    c10d::AllreduceOptions o;
    o.reduceOp = op;
    try {
      pg->allreduce(v, o)->wait();
      if (!v[0].is_same(t)) t.copy_(v[0]);
    } catch (const std::exception& e) {
      throw CommError("all-reduce across " + std::to_string(world) + " ranks failed (did a rank die?): " +
                      FirstLine(e.what()));
    }
  }

  void Broadcast(at::Tensor t) {
    if (world <= 1) return;
    std::vector<at::Tensor> v{t.device() == device ? t : t.to(device)};
    try {
      pg->broadcast(v)->wait();
      if (!v[0].is_same(t)) t.copy_(v[0]);
    } catch (const std::exception& e) {
      throw CommError("broadcast across " + std::to_string(world) + " ranks failed (did a rank die?): " +
                      FirstLine(e.what()));
    }
  }
};

// A 64-bit mix of the seed with the epoch and rank, for the per-epoch streams.
uint64_t MixSeed(uint64_t seed, int64_t epoch, int rank) {
  uint64_t x = seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(epoch + 1)) ^
               (0xbf58476d1ce4e5b9ull * static_cast<uint64_t>(rank + 1));
  x ^= x >> 31;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 29;
  return x & 0x7fffffffffffffffull;  // torch seeds are taken as signed in places
}

std::string ShapeText(const std::vector<int64_t>& s) {
  std::string out = "{";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "}";
}

// ---- models

// ResNet's basic block: two 3x3 convolutions with batch norm and a shortcut.
struct BasicBlockImpl : nn::Module {
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride)
      : conv1(register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)))),
        bn1(register_module("bn1", nn::BatchNorm2d(out))),
        conv2(register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)))),
        bn2(register_module("bn2", nn::BatchNorm2d(out))) {
    if (stride != 1 || in != out) {
      shortcut = register_module(
          "shortcut", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)),
                                     nn::BatchNorm2d(out)));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    auto y = torch::relu(bn1(conv1(x)));
    y = bn2(conv2(y));
    return torch::relu(y + (shortcut ? shortcut->forward(x) : x));
  }
  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  nn::Conv2d conv2;
  nn::BatchNorm2d bn2;
  nn::Sequential shortcut{nullptr};
};
TORCH_MODULE(BasicBlock);

// Images as {C, H, W}: a row shape of {H, W} is one channel.
std::vector<int64_t> ImageShape(const ModelSpec& m) {
  const auto& s = m.input_shape;
  if (s.size() == 2) return {1, s[0], s[1]};
  if (s.size() == 3) return s;
  throw TrainError("`" + m.arch + "` needs images (rows of shape {H, W} or {C, H, W}), but the data has rows of shape " +
                   ShapeText(s));
}

nn::Sequential Build(const ModelSpec& m) {
  if (m.classes < 1) throw TrainError("the model needs classes >= 1");
  for (int64_t d : m.input_shape) {
    if (d < 1) throw TrainError("the data's row shape " + ShapeText(m.input_shape) + " has an empty dimension");
  }
  nn::Sequential seq;
  if (m.arch == "mlp") {
    int64_t in = 1;
    for (int64_t d : m.input_shape) in *= d;
    seq->push_back(nn::Flatten());
    for (int64_t h : m.hidden) {
      if (h < 1) throw TrainError("`mlp`: hidden widths must be >= 1");
      seq->push_back(nn::Linear(in, h));
      seq->push_back(nn::ReLU());
      if (m.dropout > 0) seq->push_back(nn::Dropout(m.dropout));
      in = h;
    }
    seq->push_back(nn::Linear(in, m.classes));
    return seq;
  }
  if (m.arch == "cnn") {
    auto img = ImageShape(m);
    int64_t c = img[0], h = img[1], w = img[2];
    seq->push_back(nn::Functional([img](torch::Tensor x) { return x.reshape({-1, img[0], img[1], img[2]}); }));
    for (int64_t ch : m.channels) {
      if (ch < 1) throw TrainError("`cnn`: channels must be >= 1");
      if (h < 2 || w < 2) {
        throw TrainError("`cnn`: " + std::to_string(m.channels.size()) + " conv blocks halve " +
                         ShapeText(m.input_shape) + " images below 1 pixel; use fewer channels entries");
      }
      seq->push_back(nn::Conv2d(nn::Conv2dOptions(c, ch, 3).padding(1)));
      seq->push_back(nn::ReLU());
      seq->push_back(nn::MaxPool2d(2));
      c = ch;
      h /= 2;
      w /= 2;
    }
    seq->push_back(nn::Flatten());
    if (m.dropout > 0) seq->push_back(nn::Dropout(m.dropout));
    seq->push_back(nn::Linear(c * h * w, m.classes));
    return seq;
  }
  if (m.arch == "resnet18") {
    auto img = ImageShape(m);
    if (img[0] != m.in_channels) {
      throw TrainError("`resnet18`: in_channels is " + std::to_string(m.in_channels) + ", but the images have " +
                       std::to_string(img[0]) + " channels (rows of shape " + ShapeText(m.input_shape) + ")");
    }
    seq->push_back(nn::Functional([img](torch::Tensor x) { return x.reshape({-1, img[0], img[1], img[2]}); }));
    seq->push_back(nn::Conv2d(nn::Conv2dOptions(img[0], 64, 3).padding(1).bias(false)));
    seq->push_back(nn::BatchNorm2d(64));
    seq->push_back(nn::ReLU());
    int64_t in = 64;
    for (int64_t out : {64, 128, 256, 512}) {
      seq->push_back(BasicBlock(in, out, out == 64 ? 1 : 2));
      seq->push_back(BasicBlock(out, out, 1));
      in = out;
    }
    seq->push_back(nn::AdaptiveAvgPool2d(1));
    seq->push_back(nn::Flatten());
    seq->push_back(nn::Linear(512, m.classes));
    return seq;
  }
  throw TrainError("model `" + m.arch + "` is not one the trainer builds (mlp, cnn, resnet18)");
}

Json SpecJson(const TrainConfig& c) {
  const ModelSpec& m = c.model;
  return Json{{"format", "mlp.model.v1"},  {"arch", m.arch},           {"hidden", m.hidden},
              {"channels", m.channels},    {"classes", m.classes},     {"dropout", m.dropout},
              {"in_channels", m.in_channels}, {"input_shape", m.input_shape}, {"loss", c.loss}};
}

ModelSpec SpecFromJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, false);
  if (!j.is_object() || j.value("format", "") != "mlp.model.v1") {
    throw TrainError("the archive's model spec is not an mlp.model.v1 object");
  }
  ModelSpec m;
  try {
    m.arch = j.at("arch").get<std::string>();
    m.hidden = j.at("hidden").get<std::vector<int64_t>>();
    m.channels = j.at("channels").get<std::vector<int64_t>>();
    m.classes = j.at("classes").get<int64_t>();
    m.dropout = j.at("dropout").get<double>();
    m.in_channels = j.at("in_channels").get<int64_t>();
    m.input_shape = j.at("input_shape").get<std::vector<int64_t>>();
  } catch (const Json::exception& e) {
    throw TrainError(std::string("the archive's model spec is malformed: ") + e.what());
  }
  return m;
}

// ---- data

torch::Tensor Features(const DataView& d) {
  std::vector<int64_t> shape = {static_cast<int64_t>(d.rows)};
  shape.insert(shape.end(), d.row_shape.begin(), d.row_shape.end());
  if (!d.x && d.rows) throw TrainError("the data has rows but no features");
  return torch::from_blob(const_cast<float*>(d.x), shape, torch::kFloat);  // read only: batches are copies
}

void CheckData(const TrainConfig& c, const DataView& d, const char* what) {
  if (d.row_shape != c.model.input_shape) {
    throw TrainError(std::string(what) + " rows have shape " + ShapeText(d.row_shape) + ", but the model takes " +
                     ShapeText(c.model.input_shape));
  }
  if (c.loss == "cross_entropy" && !d.labels) throw TrainError(std::string(what) + " has no `label` column");
  if (d.labels) {
    for (uint64_t r = 0; r < d.rows; ++r) {
      int64_t y = d.labels[r];
      if (y < 0 || y >= c.model.classes) {
        throw TrainError(std::string(what) + ": the label of row " + std::to_string(r) + " is " + std::to_string(y) +
                         ", outside [0, " + std::to_string(c.model.classes) + ") for a model of " +
                         std::to_string(c.model.classes) + " classes");
      }
    }
  }
  if (c.loss == "mse") {
    if (d.targets && d.target_dim != c.model.classes) {
      throw TrainError(std::string(what) + ": mse targets have " + std::to_string(d.target_dim) +
                       " values per row, but the model has " + std::to_string(c.model.classes) + " outputs");
    }
    if (!d.targets && !d.labels) throw TrainError(std::string(what) + " has neither `target` nor `label` for mse");
  }
}

struct Batch {
  torch::Tensor x, labels, targets;
};

Batch Take(const TrainConfig& c, const DataView& d, const torch::Tensor& x, const torch::Tensor& idx) {
  Batch b;
  b.x = x.index_select(0, idx);
  if (d.labels) {
    auto all = torch::from_blob(const_cast<int64_t*>(d.labels), {static_cast<int64_t>(d.rows)}, torch::kLong);
    b.labels = all.index_select(0, idx);
  }
  if (c.loss == "mse") {
    if (d.targets) {
      auto all = torch::from_blob(const_cast<float*>(d.targets), {static_cast<int64_t>(d.rows), d.target_dim},
                                  torch::kFloat);
      b.targets = all.index_select(0, idx);
    } else {
      b.targets = F::one_hot(b.labels, c.model.classes).to(torch::kFloat);
    }
  }
  return b;
}

// A batch on the training device (a no-op on the CPU).
Batch ToDevice(Batch b, torch::Device device) {
  if (device.is_cpu()) return b;
  for (auto* t : {&b.x, &b.labels, &b.targets})
    if (t->defined()) *t = t->to(device, /*non_blocking=*/true);
  return b;
}

torch::Tensor Loss(const TrainConfig& c, const torch::Tensor& out, const Batch& b) {
  if (c.loss == "mse") return F::mse_loss(out, b.targets);
  return F::cross_entropy(out, b.labels, F::CrossEntropyFuncOptions().label_smoothing(c.label_smoothing));
}

torch::Tensor Forward(const TrainConfig& c, nn::Sequential& model, const torch::Tensor& x) {
  if (!c.bf16) return model->forward(x);
  // bf16 autocast on CPU (LibTorch 1.13): matmuls and convolutions in bf16, the loss in f32.
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  at::autocast::set_cpu_enabled(true);
  torch::Tensor out;
  try {
    out = model->forward(x);
  } catch (...) {
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
    throw;
  }
  at::autocast::set_cpu_enabled(false);
  at::autocast::clear_cache();
  return out.to(torch::kFloat);
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerSpec& o, nn::Sequential& model) {
  auto params = model->parameters();
  if (o.kind == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  }
  if (o.kind == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
  }
  if (o.kind == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
  }
  throw TrainError("optimizer `" + o.kind + "` is not one the trainer has (sgd, adam, adamw)");
}

// Sums of the loss and of the correct predictions over `d`, in eval mode.
std::pair<double, double> Evaluate(const TrainConfig& c, nn::Sequential& model, const DataView& d,
                                   torch::Device device, const TrainHooks& hooks) {
  torch::NoGradGuard no_grad;
  model->eval();
  auto x = Features(d);
  int64_t n = static_cast<int64_t>(d.rows), step = std::max<int64_t>(c.batch_size, 256);
  double loss = 0, correct = 0;
  for (int64_t b = 0; b < n; b += step) {
    if (hooks.cancelled && hooks.cancelled()) throw TrainError("cancelled");
    auto idx = torch::arange(b, std::min(n, b + step), torch::kLong);
    Batch batch = ToDevice(Take(c, d, x, idx), device);
    auto out = Forward(c, model, batch.x);
    loss += Loss(c, out, batch).item<double>() * static_cast<double>(idx.size(0));
    if (batch.labels.defined()) correct += out.argmax(1).eq(batch.labels).sum().item<double>();
  }
  model->train();
  return {loss, correct};
}

std::string Fixed(double v, int digits) {
  if (std::isnan(v)) return "-";
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(digits);
  os << v;
  return os.str();
}

// The model's parameters and buffers into `ar`, as CPU tensors wherever it
// trains, so that archives load on any machine.
void SaveParams(nn::Sequential& model, torch::serialize::OutputArchive& ar) {
  auto device = model->parameters().empty() ? torch::Device(torch::kCPU) : model->parameters()[0].device();
  if (device.is_cpu()) return model->save(ar);
  model->to(torch::kCPU);
  model->save(ar);
  model->to(device);
}

// The checkpoint archive: the model, the optimizer's state, the epochs done
// and their metrics; what `resume` continues from.
std::string SaveCheckpoint(const TrainConfig& c, nn::Sequential& model, torch::optim::Optimizer& opt, int64_t epoch,
                           const std::vector<EpochMetrics>& metrics) {
  torch::serialize::OutputArchive ar, m, o;
  SaveParams(model, m);
  opt.save(o);
  ar.write("model", m);
  ar.write("optimizer", o);
  ar.write("epoch", c10::IValue(epoch));
  Json js = Json::array();
  for (const auto& e : metrics) {
    js.push_back({e.epoch, e.lr, e.train_loss, e.train_accuracy, e.val_loss, e.val_accuracy, e.samples_per_s, e.seconds});
  }
  ar.write("metrics", c10::IValue(js.dump()));
  ar.write("mlp_spec", c10::IValue(SpecJson(c).dump()));
  std::ostringstream os;
  ar.save_to(os);
  return std::move(os).str();
}

// Loads a checkpoint's model (still on the CPU) and metrics; the epochs it had
// done. The optimizer's state follows with LoadOptimizerState once the model
// is on its device and the optimizer exists.
int64_t LoadCheckpoint(const TrainConfig& c, std::string_view bytes, nn::Sequential& model,
                       std::vector<EpochMetrics>* metrics) {
  try {
    torch::serialize::InputArchive ar, m, o;
    ar.load_from(bytes.data(), bytes.size());
    c10::IValue spec, epoch, js;
    if (!ar.try_read("mlp_spec", spec) || !spec.isString() || !ar.try_read("epoch", epoch) || !epoch.isInt() ||
        !ar.try_read("metrics", js) || !js.isString()) {
      throw TrainError("not a training checkpoint");
    }
    if (Json::parse(spec.toStringRef(), nullptr, false) != SpecJson(c)) {
      throw TrainError("it was written for another model");
    }
    if (!ar.try_read("model", m) || !ar.try_read("optimizer", o)) throw TrainError("it has no model or optimizer state");
    model->load(m);
    Json rows = Json::parse(js.toStringRef(), nullptr, false);
    metrics->clear();
    if (rows.is_array()) {
      for (const auto& r : rows) {
        if (!r.is_array() || r.size() != 8) continue;
        auto num = [&](size_t i) { return r[i].is_number() ? r[i].get<double>() : std::numeric_limits<double>::quiet_NaN(); };
        EpochMetrics e;
        e.epoch = static_cast<int64_t>(num(0));
        e.lr = num(1);
        e.train_loss = num(2);
        e.train_accuracy = num(3);
        e.val_loss = num(4);
        e.val_accuracy = num(5);
        e.samples_per_s = num(6);
        e.seconds = num(7);
        metrics->push_back(e);
      }
    }
    return epoch.toInt();
  } catch (const TrainError& e) {
    throw TrainError(std::string("the checkpoint cannot be resumed: ") + e.what());
  } catch (const std::exception& e) {
    throw TrainError("the checkpoint cannot be resumed: " + FirstLine(e.what()));
  }
}

void LoadOptimizerState(std::string_view bytes, torch::optim::Optimizer& opt) {
  try {
    torch::serialize::InputArchive ar, o;
    ar.load_from(bytes.data(), bytes.size());
    if (!ar.try_read("optimizer", o)) throw TrainError("it has no optimizer state");
    opt.load(o);
  } catch (const TrainError& e) {
    throw TrainError(std::string("the checkpoint cannot be resumed: ") + e.what());
  } catch (const std::exception& e) {
    throw TrainError("the checkpoint cannot be resumed: " + FirstLine(e.what()));
  }
}

// Where a rank trains: a CUDA device when the stage asked for gpus and this
// build (MLP_WITH_CUDA) and machine have one, else the CPU, with a warning.
torch::Device TrainDevice(const TrainConfig& c, const TrainHooks& hooks) {
  if (!c.gpu) return torch::kCPU;
#ifdef MLP_WITH_CUDA
  if (torch::cuda::is_available()) {
    int64_t n = std::max<int64_t>(1, static_cast<int64_t>(torch::cuda::device_count()));
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(std::max(0, c.dist.rank) % n));
  }
  const char* why = "no CUDA device is visible";
#else
  const char* why = "this build has no CUDA (configure with -DMLP_WITH_CUDA=ON and a CUDA LibTorch)";
#endif
  if (hooks.log) hooks.log(std::string("warning: the stage asks for gpus, but ") + why + "; training on the CPU");
  return torch::kCPU;
}

TrainResult DoTrain(const TrainConfig& c, const DataView& train, const DataView* val, const TrainHooks& hooks) {
  if (c.epochs < 1 || c.batch_size < 1 || c.grad_accum < 1) throw TrainError("epochs, batch_size and grad_accum must be >= 1");
  if (c.loss != "cross_entropy" && c.loss != "mse") throw TrainError("loss `" + c.loss + "` is not cross_entropy or mse");
  if (train.rows == 0) throw TrainError("the training data has no rows");
  CheckData(c, train, "the training data");
  if (val) CheckData(c, *val, "the validation data");
  torch::set_num_threads(std::max(1, c.threads));
  const torch::Device device = TrainDevice(c, hooks);
  Comm comm = Comm::Connect(c.dist, device);
  const int rank = comm.rank, world = comm.world;
  // Initialisation: the same on every rank. The lock keeps ranks that share a
  // process (tests) from reseeding torch's global generator under each other.
  static std::mutex init_mu;
  std::unique_lock<std::mutex> init_lock(init_mu);
  torch::manual_seed(c.seed);
  nn::Sequential model = Build(c.model);
  init_lock.unlock();
  model->train();
  TrainResult res;
  int64_t start_epoch = 0;
  if (!c.resume.empty()) start_epoch = LoadCheckpoint(c, c.resume, model, &res.epochs);
  model->to(device);
  auto opt = MakeOptimizer(c.optimizer, model);
  if (!c.resume.empty()) {
    LoadOptimizerState(c.resume, *opt);
    if (start_epoch < 0 || start_epoch >= c.epochs) {
      throw TrainError("the checkpoint is of epoch " + std::to_string(start_epoch) + ", outside 0.." +
                       std::to_string(c.epochs - 1));
    }
    res.resumed_from = start_epoch;
    if (hooks.log) hooks.log("resumed from the checkpoint of epoch " + std::to_string(start_epoch));
  }
  // Every rank starts from rank 0's weights (they agree already; this makes it certain).
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) comm.Broadcast(p.data());
    for (auto& b : model->buffers()) comm.Broadcast(b);
  }
  auto x = Features(train);
  // Each rank trains on its own rows; all take the same number of steps (the
  // fewest rows of any rank, a different subset each epoch when shuffling).
  int64_t n = static_cast<int64_t>(train.rows);
  {
    auto t = torch::tensor({n}, torch::kLong);
    comm.AllReduce(t, c10d::ReduceOp::MIN);
    n = t.item<int64_t>();
  }
  auto params = model->parameters();
  int64_t numel = 0;
  for (const auto& p : params) numel += p.numel();
  torch::Tensor flat =
      world > 1 ? torch::zeros({numel}, torch::TensorOptions().dtype(torch::kFloat).device(device)) : torch::Tensor();
  // Averages the gradients over the ranks: one flat buffer, one all-reduce.
  auto sync_grads = [&] {
    if (world <= 1) return;
    torch::NoGradGuard no_grad;
    int64_t off = 0;
    for (auto& p : params) {
      auto slice = flat.narrow(0, off, p.numel());
      if (p.grad().defined()) slice.copy_(p.grad().reshape({-1}));
      else slice.zero_();
      off += p.numel();
    }
    comm.AllReduce(flat);
    flat.div_(static_cast<double>(world));
    off = 0;
    for (auto& p : params) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      p.mutable_grad().copy_(flat.narrow(0, off, p.numel()).view_as(p));
      off += p.numel();
    }
  };
  for (int64_t e = start_epoch; e < c.epochs; ++e) {
    EpochMetrics m;
    m.epoch = e + 1;
    m.lr = LearningRate(c.schedule, c.optimizer.lr, e, c.epochs);
    for (auto& g : opt->param_groups()) g.options().set_lr(m.lr);
    // The epoch's random streams depend only on (seed, epoch, rank), so a run
    // resumed from a checkpoint repeats the uninterrupted run exactly.
    torch::manual_seed(MixSeed(c.seed, e, rank));  // dropout
    auto start = std::chrono::steady_clock::now();
    torch::Tensor perm;
    if (c.shuffle) {
      auto gen = at::detail::createCPUGenerator(MixSeed(c.seed ^ 0x5bd1e995u, e, rank));
      perm = torch::randperm(static_cast<int64_t>(train.rows), gen, torch::TensorOptions().dtype(torch::kLong));
    } else {
      perm = torch::arange(static_cast<int64_t>(train.rows), torch::kLong);
    }
    double loss_sum = 0, correct = 0;
    int64_t step = 0, steps = (n + c.batch_size - 1) / c.batch_size;
    opt->zero_grad();
    for (int64_t b = 0; b < n; b += c.batch_size, ++step) {
      if (hooks.cancelled && hooks.cancelled()) throw TrainError("cancelled");
      auto idx = perm.slice(0, b, std::min(n, b + c.batch_size));
      Batch batch = ToDevice(Take(c, train, x, idx), device);
      auto out = Forward(c, model, batch.x);
      auto loss = Loss(c, out, batch);
      loss.backward();  // gradients of grad_accum steps add up before the update
      if ((step + 1) % c.grad_accum == 0 || step + 1 == steps) {
        sync_grads();
        opt->step();
        opt->zero_grad();
      }
      double l = loss.item<double>();
      if (!std::isfinite(l)) {
        throw TrainError("epoch " + std::to_string(e + 1) + ", batch " + std::to_string(step + 1) +
                         ": the loss is " + std::to_string(l) + "; lower the learning rate or normalise the inputs");
      }
      loss_sum += l * static_cast<double>(idx.size(0));
      if (batch.labels.defined()) correct += out.argmax(1).eq(batch.labels).sum().item<double>();
      if (hooks.progress) {
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        int64_t done = std::min(n, b + c.batch_size);
        BatchProgress p{e + 1, c.epochs, step + 1, steps, loss_sum / static_cast<double>(done),
                        secs > 0 ? static_cast<double>(done * world) / secs : 0};
        hooks.progress(p);
      }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // The epoch over all ranks: sums of loss, correct predictions and rows, and the slowest rank's time.
    auto tot = torch::tensor({loss_sum, correct, static_cast<double>(n)}, torch::kDouble);
    comm.AllReduce(tot);
    auto slowest = torch::tensor({secs}, torch::kDouble);
    comm.AllReduce(slowest, c10d::ReduceOp::MAX);
    secs = slowest.item<double>();
    double rows = tot[2].item<double>();
    m.train_loss = tot[0].item<double>() / rows;
    m.train_accuracy = train.labels ? tot[1].item<double>() / rows : std::numeric_limits<double>::quiet_NaN();
    m.seconds = secs;
    m.samples_per_s = secs > 0 ? rows / secs : 0;
    m.val_loss = m.val_accuracy = std::numeric_limits<double>::quiet_NaN();
    // Batch-norm statistics differ per rank: rank 0's are the model's.
    {
      torch::NoGradGuard no_grad;
      for (auto& buf : model->buffers()) comm.Broadcast(buf);
    }
    if (val) {
      auto [vl, vc] = val->rows ? Evaluate(c, model, *val, device, hooks) : std::pair<double, double>{0, 0};
      auto v = torch::tensor({vl, vc, static_cast<double>(val->rows)}, torch::kDouble);
      comm.AllReduce(v);
      double vn = v[2].item<double>();
      if (vn > 0) {
        m.val_loss = v[0].item<double>() / vn;
        if (val->labels) m.val_accuracy = v[1].item<double>() / vn;
      }
    }
    res.epochs.push_back(m);
    if (hooks.log) {
      hooks.log("epoch " + std::to_string(m.epoch) + "/" + std::to_string(c.epochs) + ": loss " + Fixed(m.train_loss, 4) +
                " accuracy " + Fixed(m.train_accuracy, 4) + " val_loss " + Fixed(m.val_loss, 4) + " val_accuracy " +
                Fixed(m.val_accuracy, 4) + " lr " + Fixed(m.lr, 6) + " samples/s " + Fixed(m.samples_per_s, 0) +
                " (" + Fixed(secs, 2) + " s)");
    }
    if (rank == 0 && hooks.checkpoint && c.checkpoint_every > 0 && (e + 1) % c.checkpoint_every == 0 &&
        e + 1 < c.epochs) {
      std::string error;
      if (!hooks.checkpoint(e + 1, SaveCheckpoint(c, model, *opt, e + 1, res.epochs), &error) && hooks.log) {
        hooks.log("warning: the checkpoint of epoch " + std::to_string(e + 1) + " was not kept: " + error);
      }
    }
  }
  if (rank == 0) {
    torch::serialize::OutputArchive ar;
    SaveParams(model, ar);
    ar.write("mlp_spec", c10::IValue(SpecJson(c).dump()));
    std::ostringstream os;
    ar.save_to(os);
    res.model = std::move(os).str();
  }
  res.ok = true;
  return res;
}

nn::Sequential LoadArchive(std::string_view archive, ModelSpec* spec) {
  torch::serialize::InputArchive ar;
  ar.load_from(archive.data(), archive.size());
  c10::IValue v;
  if (!ar.try_read("mlp_spec", v) || !v.isString()) throw TrainError("the archive has no model spec (`mlp_spec`)");
  *spec = SpecFromJson(v.toStringRef());
  nn::Sequential model = Build(*spec);
  model->load(ar);
  model->eval();
  return model;
}

// ---- the API

TrainResult ApiTrain(const TrainConfig& c, const DataView& train, const DataView* val, const TrainHooks& hooks) {
  try {
    return DoTrain(c, train, val, hooks);
  } catch (const CommError& e) {
    TrainResult r;
    r.error = e.what();
    r.retryable = true;
    return r;
  } catch (const std::exception& e) {
    TrainResult r;
    // LibTorch's messages carry a C++ backtrace after the first line; keep the message.
    r.error = FirstLine(e.what());
    return r;
  }
}

bool ApiPredict(std::string_view archive, const DataView& input, std::vector<float>* out, int64_t* out_dim,
                std::string* error) {
  try {
    ModelSpec spec;
    nn::Sequential model = LoadArchive(archive, &spec);
    if (input.row_shape != spec.input_shape) {
      throw TrainError("the input rows have shape " + ShapeText(input.row_shape) + ", but the model takes " +
                       ShapeText(spec.input_shape));
    }
    torch::NoGradGuard no_grad;
    auto y = model->forward(Features(input)).contiguous();
    *out_dim = y.dim() == 2 ? y.size(1) : 0;
    out->assign(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
    return true;
  } catch (const std::exception& e) {
    *error = FirstLine(e.what());
    return false;
  }
}

bool ApiSpecOf(std::string_view archive, std::string* spec_json, std::string* error) {
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(archive.data(), archive.size());
    c10::IValue v;
    if (!ar.try_read("mlp_spec", v) || !v.isString()) throw TrainError("the archive has no model spec (`mlp_spec`)");
    *spec_json = v.toStringRef();
    return true;
  } catch (const std::exception& e) {
    *error = FirstLine(e.what());
    return false;
  }
}

}  // namespace
}  // namespace mlp::rt::train

extern "C" __attribute__((visibility("default"))) const mlp::rt::train::TrainerApi* mlp_trainer_api_v2() {
  static const mlp::rt::train::TrainerApi api = [] {
    mlp::rt::train::TrainerApi a;
    a.train = mlp::rt::train::ApiTrain;
    a.predict = mlp::rt::train::ApiPredict;
    a.spec_of = mlp::rt::train::ApiSpecOf;
    return a;
  }();
  return &api;
}
