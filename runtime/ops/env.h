// Reinforcement-learning environments declared in .mlp (`env NAME { ... }`):
// each env's step function compiles into one CompiledKernel that both tiers
// run (the interpreter and the native JIT). Its parameters are the state
// fields in declared order, then the action (i64 for discrete(n), f32 for
// box(...)); its outputs are the new value of every state field, then the
// reward (f64), then done (bool). EnvInstance holds one episode's state.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "plan.pb.h"
#include "runtime/ops/kernel_interp.h"

namespace mlp::rt::ops {

// How a state field gets its value at every reset.
struct EnvInit {
  enum class Kind : uint8_t { Constant, Uniform, LogUniform, RandInt, Choice };
  Kind kind = Kind::Constant;
  std::vector<Scalar> values;   // Constant: one value; Choice: the candidates (in the field's type)
  double low = 0, high = 0;     // Uniform, LogUniform: [low, high]
  int64_t ilow = 0, ihigh = 0;  // RandInt: [ilow, ihigh)
};

struct EnvField {
  std::string name;
  ScalarType type = ScalarType::F32;
  EnvInit init;
};

struct EnvSpec {
  enum class Action : uint8_t { Discrete, Box };
  std::string name;               // the env's plan name
  std::vector<EnvField> state;    // in declared order
  std::vector<uint32_t> observe;  // indices into `state`, in order
  Action action = Action::Discrete;
  int64_t actions = 0;       // Discrete: n (actions 0..n-1)
  double low = 0, high = 0;  // Box: the bounds of the action
  int64_t dims = 1;          // Box
  int64_t max_steps = 0;     // 0: no limit
  ScalarType action_type() const { return action == Action::Discrete ? ScalarType::I64 : ScalarType::F32; }
};

class EnvInstance;

class EnvProgram {
 public:
  // Builds every env of the plan. Step functions may call the plan's kernels,
  // taken from `kernels`, which must outlive the EnvProgram. Null with `error`
  // (naming the env, and file:line:col for errors in its source) when an env
  // is invalid.
  static std::unique_ptr<EnvProgram> Build(const plan::v1::Plan& plan, const KernelProgram& kernels,
                                           std::string* error, const KernelOptions& options = {});
  const EnvSpec* Find(std::string_view name) const;
  // The step kernel of env `name` (named `<name>.step`), or null.
  const CompiledKernel* StepKernel(std::string_view name) const;
  // A new instance of env `name`, reset with `seed`; null when there is no such env.
  std::unique_ptr<EnvInstance> NewInstance(std::string_view name, uint64_t seed) const;
  size_t size() const { return envs_.size(); }
  ~EnvProgram();

 private:
  EnvProgram() = default;
  struct Entry {
    EnvSpec spec;
    std::unique_ptr<CompiledKernel> step;
  };
  std::vector<Entry> envs_;
};

// One environment: its state, the step count of the episode and its own
// random generator. Not thread-safe; the step kernel it uses is.
class EnvInstance {
 public:
  // `spec` and `step` belong to an EnvProgram that outlives the instance.
  EnvInstance(const EnvSpec& spec, const CompiledKernel& step, uint64_t seed);

  // A new episode: every field draws its initial value (the generator
  // carries on from where it was).
  void Reset();
  // Reseeds, then Reset(): the same seed gives the same initial state.
  void Reset(uint64_t seed);
  // Runs the step function once. The action is an integer in 0..n-1 for a
  // discrete action space, a float for a box (clamped into [low, high]).
  // `obs` gets the observed fields after the step. `done` is true when the
  // step function says so or the episode reached max_steps (then truncated()).
  // False with `error` when the action is invalid, the episode is over, or a
  // check inside the step failed (with its file:line:col); the state is then
  // unchanged.
  bool Step(const Scalar& action, std::vector<double>* obs, double* reward, bool* done, std::string* error);
  // The observed fields, in `observe` order (bools as 0 or 1).
  std::vector<double> Observe() const;
  const std::vector<Scalar>& state() const { return state_; }
  // Replaces the state (one value per field, of its type); starts a new episode.
  bool SetState(std::span<const Scalar> values, std::string* error);
  int64_t steps() const { return steps_; }
  bool done() const { return done_; }
  // The episode ended at max_steps rather than by the step function's `done`.
  bool truncated() const { return truncated_; }
  const EnvSpec& spec() const { return *spec_; }

 private:
  Scalar Draw(const EnvField& f);
  const EnvSpec* spec_;
  const CompiledKernel* step_;
  std::mt19937_64 rng_;
  std::vector<Scalar> state_;
  std::vector<Scalar> args_, out_;  // reused between steps
  int64_t steps_ = 0;
  bool done_ = false;
  bool truncated_ = false;
};

}  // namespace mlp::rt::ops
