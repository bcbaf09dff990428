// Envs declared in .mlp: the step function compiled into one kernel with
// several results, run through EnvInstance (reset draws, steps, max_steps),
// checked against a plain C++ CartPole, and refused cleanly when the plan is
// corrupt.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>

#include "compiler/plan/lower.h"
#include "runtime/ops/env.h"
#include "runtime/ops/kernel_code.h"
#include "tests/test_util.h"

namespace mlp::rt::ops {
namespace {

// "file:line:col" of the first occurrence of `needle` in `text`.
std::string Where(const std::string& file, const std::string& text, const std::string& needle) {
  size_t pos = text.find(needle);
  EXPECT_NE(pos, std::string::npos) << needle;
  int line = 1, col = 1;
  for (size_t k = 0; k < pos; ++k) {
    if (text[k] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return file + ":" + std::to_string(line) + ":" + std::to_string(col);
}

// An rl stage per env, so that the plan carries them.
std::string WithStages(const std::string& envs, const std::vector<std::string>& names) {
  std::string text = envs;
  for (const auto& n : names) text += "\nrl use_" + n + " {\n  env       = " + n + "\n  algorithm = ppo()\n}\n";
  return text;
}

struct Built {
  plan::v1::Plan plan;
  std::unique_ptr<KernelProgram> kernels;
  std::unique_ptr<EnvProgram> envs;
  std::string error;
};

// Builds the kernels and envs of `plan`; `envs` is null (with `error`) when refused.
std::unique_ptr<Built> Build(plan::v1::Plan plan) {
  auto b = std::make_unique<Built>();
  b->plan = std::move(plan);
  b->kernels = KernelProgram::Build(b->plan, &b->error);
  EXPECT_TRUE(b->kernels) << b->error;
  if (b->kernels) b->envs = EnvProgram::Build(b->plan, *b->kernels, &b->error);
  return b;
}

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// CartPole as in pipelines/custom_env_rl.mlp, in float, operation by operation
// in the order the interpreter evaluates them (literal subexpressions such as
// 4.0 / 3.0 are computed in double and then rounded, as the kernel compiler does).
struct CartPole {
  float x, x_dot, theta, theta_dot;
  bool Step(int64_t a) {
    const float gravity = 9.8f, mass_cart = 1.0f, mass_pole = 0.1f, half_length = 0.5f, force_mag = 10.0f,
                tau = 0.02f;
    float total_mass = mass_cart + mass_pole;
    float pole_moment = mass_pole * half_length;
    float force = a == 1 ? force_mag : -force_mag;
    float cos_t = std::cos(theta);
    float sin_t = std::sin(theta);
    float temp = (force + pole_moment * (theta_dot * theta_dot) * sin_t) / total_mass;
    float denom = half_length * (static_cast<float>(4.0 / 3.0) - mass_pole * (cos_t * cos_t) / total_mass);
    float theta_acc = (gravity * sin_t - cos_t * temp) / denom;
    float x_acc = temp - pole_moment * theta_acc * cos_t / total_mass;
    x = x + tau * x_dot;
    x_dot = x_dot + tau * x_acc;
    theta = theta + tau * theta_dot;
    theta_dot = theta_dot + tau * theta_acc;
    return std::fabs(theta) > static_cast<float>(12.0 * 3.14159265 / 180.0) || std::fabs(x) > 2.4f;
  }
};

TEST(Env, CartPoleMatchesPlainCxxBitForBit) {
  const std::string path = "pipelines/custom_env_rl.mlp";
  auto b = Build(testing::CompilePlan(testing::ReadFile(std::string(MLP_SOURCE_DIR) + "/" + path), path));
  ASSERT_TRUE(b->envs) << b->error;
  const EnvSpec* spec = b->envs->Find("pole");
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->max_steps, 500);
  EXPECT_EQ(spec->action, EnvSpec::Action::Discrete);
  EXPECT_EQ(spec->actions, 2);
  auto env = b->envs->NewInstance("pole", 42);
  ASSERT_TRUE(env);
  int episodes = 0, total_steps = 0;
  for (int ep = 0; ep < 5; ++ep, ++episodes) {
    env->Reset(1000 + static_cast<uint64_t>(ep));
    const auto& s = env->state();
    ASSERT_EQ(s.size(), 4u);
    CartPole ref{static_cast<float>(s[0].f), static_cast<float>(s[1].f), static_cast<float>(s[2].f),
                 static_cast<float>(s[3].f)};
    uint64_t lcg = 12345 + static_cast<uint64_t>(ep);
    for (int t = 0;; ++t) {
      lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
      int64_t a = (lcg >> 33) & 1;
      if (ep == 0) a = t % 2;  // alternating pushes keep the pole up for a long time
      bool ref_done = ref.Step(a);
      std::vector<double> obs;
      double reward = 0;
      bool done = false;
      std::string error;
      ASSERT_TRUE(env->Step(Scalar::I64(a), &obs, &reward, &done, &error)) << error;
      ++total_steps;
      ASSERT_EQ(obs.size(), 4u);
      float want[4] = {ref.x, ref.x_dot, ref.theta, ref.theta_dot};
      for (int k = 0; k < 4; ++k) {
        ASSERT_EQ(Bits(static_cast<float>(obs[k])), Bits(want[k])) << "episode " << ep << " step " << t << " obs " << k;
        ASSERT_EQ(obs[k], static_cast<double>(want[k]));  // an f32 observation is a float, widened exactly
      }
      EXPECT_EQ(reward, 1.0);
      bool ref_trunc = !ref_done && t + 1 == 500;
      ASSERT_EQ(done, ref_done || ref_trunc) << "step " << t;
      if (done) {
        EXPECT_EQ(env->truncated(), ref_trunc);
        EXPECT_EQ(env->steps(), t + 1);
        break;
      }
    }
  }
  EXPECT_EQ(episodes, 5);
  EXPECT_GT(total_steps, 5 * 8);  // real episodes, not one-step ones
  // The step kernel counts its interpreted calls (and the kernel it calls, `square`, its nested ones).
  const CompiledKernel* step = b->envs->StepKernel("pole");
  ASSERT_TRUE(step);
  EXPECT_EQ(step->calls() + step->native_calls(), static_cast<uint64_t>(total_steps));
  EXPECT_EQ(b->kernels->Find("square")->calls(), 2u * static_cast<uint64_t>(step->calls()));
}

TEST(Env, StepKernelFollowsTheContractWithTheNativeTier) {
  const std::string path = "pipelines/custom_env_rl.mlp";
  auto b = Build(testing::CompilePlan(testing::ReadFile(std::string(MLP_SOURCE_DIR) + "/" + path), path));
  ASSERT_TRUE(b->envs) << b->error;
  const CompiledKernel* k = b->envs->StepKernel("pole");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->name(), "pole.step");
  EXPECT_EQ(k->params(), (std::vector<ScalarType>{ScalarType::F32, ScalarType::F32, ScalarType::F32,
                                                  ScalarType::F32, ScalarType::I64}));
  EXPECT_EQ(k->outputs(), (std::vector<ScalarType>{ScalarType::F32, ScalarType::F32, ScalarType::F32,
                                                   ScalarType::F32, ScalarType::F64, ScalarType::Bool}));
  const detail::KernelCode& c = k->code();
  using detail::Op;
  using detail::T;
  EXPECT_EQ(c.output_types, (std::vector<T>{T::F32, T::F32, T::F32, T::F32, T::F64, T::Bool}));
  ASSERT_EQ(c.outputs.size(), 6u);
  const detail::Node& root = c.nodes[c.root];
  ASSERT_EQ(root.op, Op::Block);
  EXPECT_EQ(c.nodes[root.a].op, Op::Const);
  EXPECT_EQ(c.nodes[root.a].type, T::Bool);
  // Every statement is a Let; each output slot is written by a Let of its type
  // (SSA: every assignment gets a new slot, none is written twice).
  std::vector<int> writes(c.slots, 0);
  for (uint32_t s = 0; s < root.count; ++s) {
    const detail::Node& let = c.nodes[c.lists[root.list + s]];
    ASSERT_EQ(let.op, Op::Let);
    ASSERT_LT(let.slot, c.slots);
    EXPECT_GE(let.slot, k->params().size());  // parameters are never overwritten
    ++writes[let.slot];
  }
  for (uint32_t s = 0; s < c.slots; ++s) EXPECT_LE(writes[s], 1) << "slot " << s;
  for (size_t o = 0; o < c.outputs.size(); ++o) {
    EXPECT_EQ(writes[c.outputs[o]], 1) << "output " << o;
    bool found = false;
    for (uint32_t s = 0; s < root.count; ++s) {
      const detail::Node& let = c.nodes[c.lists[root.list + s]];
      if (let.slot == c.outputs[o]) {
        found = true;
        EXPECT_EQ(let.type, c.output_types[o]);
        EXPECT_EQ(c.nodes[let.a].type, c.output_types[o]);
      }
    }
    EXPECT_TRUE(found);
  }
  // CallMulti runs it directly: one value per output; Call refuses it.
  std::vector<Scalar> out;
  std::string error;
  std::vector<Scalar> args = {Scalar::F32(0), Scalar::F32(0), Scalar::F32(0), Scalar::F32(0), Scalar::I64(1)};
  ASSERT_TRUE(k->CallMulti(args, &out, &error)) << error;
  ASSERT_EQ(out.size(), 6u);
  EXPECT_EQ(out[0].f, 0.0);  // x moves with the old velocity
  EXPECT_GT(out[1].f, 0.0);  // pushed right
  EXPECT_EQ(out[4].type, ScalarType::F64);
  EXPECT_EQ(out[4].f, 1.0);
  EXPECT_EQ(out[5].type, ScalarType::Bool);
  EXPECT_EQ(out[5].i, 0);
  Scalar one;
  EXPECT_FALSE(k->Call(args, &one, &error));
  EXPECT_NE(error.find("CallMulti"), std::string::npos) << error;
}

const char* kSeq = R"(
env seq {
  state {
    a: i64 = 1
    b: i64 = 10
    c: f32 = 0.5
  }
  action discrete(3)
  observe [b, a, c]
  step(act) {
    a = a + act
    b = b + a
    a = a * 2
    let twice = a
    c = c * 2.0
    c = c + 1.0
    reward b
    done b > 100
  }
}
)";

TEST(Env, AssignmentsRunInOrderAndLaterStatementsSeeNewValues) {
  auto b = Build(testing::CompilePlan(WithStages(kSeq, {"seq"})));
  ASSERT_TRUE(b->envs) << b->error;
  auto env = b->envs->NewInstance("seq", 1);
  ASSERT_TRUE(env);
  EXPECT_EQ(env->Observe(), (std::vector<double>{10, 1, 0.5}));
  std::vector<double> obs;
  double reward = 0;
  bool done = true;
  std::string error;
  // a = 1 + 2 = 3; b = 10 + 3 = 13; a = 6; c = 0.5 * 2 + 1 = 2.
  ASSERT_TRUE(env->Step(Scalar::I64(2), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs, (std::vector<double>{13, 6, 2}));
  EXPECT_EQ(reward, 13.0);  // an i64 reward arrives as f64
  EXPECT_FALSE(done);
  EXPECT_EQ(env->state()[0].type, ScalarType::I64);
  EXPECT_EQ(env->state()[2].type, ScalarType::F32);
  // a = 6 + 1 = 7; b = 13 + 7 = 20; a = 14.
  ASSERT_TRUE(env->Step(Scalar::I64(1), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs[0], 20);
  EXPECT_EQ(obs[1], 14);
  // b = 20 + 14 = 34, then 34 + 28 = 62, then 62 + 56 = 118 > 100: done by the step function, not truncated.
  ASSERT_TRUE(env->Step(Scalar::I64(0), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs[0], 34);
  EXPECT_FALSE(done);
  ASSERT_TRUE(env->Step(Scalar::I64(0), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs[0], 62);
  EXPECT_FALSE(done);
  ASSERT_TRUE(env->Step(Scalar::I64(0), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs[0], 118);
  EXPECT_EQ(obs[1], 112);
  EXPECT_TRUE(done);
  EXPECT_FALSE(env->truncated());
  EXPECT_EQ(env->steps(), 5);
  // The episode is over until a reset.
  EXPECT_FALSE(env->Step(Scalar::I64(0), &obs, &reward, &done, &error));
  EXPECT_NE(error.find("episode is over"), std::string::npos) << error;
  env->Reset();
  EXPECT_EQ(env->steps(), 0);
  EXPECT_EQ(env->Observe(), (std::vector<double>{10, 1, 0.5}));
  // Actions are checked: range and type.
  EXPECT_FALSE(env->Step(Scalar::I64(3), &obs, &reward, &done, &error));
  EXPECT_NE(error.find("action 3 is out of range"), std::string::npos) << error;
  EXPECT_FALSE(env->Step(Scalar::I64(-1), &obs, &reward, &done, &error));
  EXPECT_FALSE(env->Step(Scalar::F32(1), &obs, &reward, &done, &error));
  EXPECT_NE(error.find("integer action"), std::string::npos) << error;
  EXPECT_EQ(env->steps(), 0);
  // SetState takes one value per field, of its type.
  EXPECT_TRUE(env->SetState(std::vector<Scalar>{Scalar::I64(0), Scalar::I64(99), Scalar::F32(0)}, &error)) << error;
  ASSERT_TRUE(env->Step(Scalar::I64(1), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs[0], 100);  // a = 1, b = 100: not yet done
  EXPECT_FALSE(done);
  EXPECT_FALSE(env->SetState(std::vector<Scalar>{Scalar::I64(0), Scalar::I64(99)}, &error));
  EXPECT_FALSE(env->SetState(std::vector<Scalar>{Scalar::I64(0), Scalar::I32(99), Scalar::F32(0)}, &error));
}

TEST(Env, MaxStepsTruncatesTheEpisode) {
  auto b = Build(testing::CompilePlan(WithStages(R"(
env walk {
  state { x: f64 = 0.0 }
  action box(-1.0, 1.0)
  observe [x]
  step(a) {
    x = x + f64(a)
    reward -1
    done false
  }
  max_steps = 3
}
)",
                                   {"walk"})));
  ASSERT_TRUE(b->envs) << b->error;
  const CompiledKernel* k = b->envs->StepKernel("walk");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->params().back(), ScalarType::F32);  // a box action is an f32
  auto env = b->envs->NewInstance("walk", 7);
  std::vector<double> obs;
  double reward = 0;
  bool done = true;
  std::string error;
  ASSERT_TRUE(env->Step(Scalar::F32(0.5f), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs[0], 0.5);
  EXPECT_EQ(reward, -1.0);
  EXPECT_FALSE(done);
  ASSERT_TRUE(env->Step(Scalar::F64(5.0), &obs, &reward, &done, &error)) << error;  // clipped into [-1, 1]
  EXPECT_EQ(obs[0], 1.5);
  EXPECT_FALSE(done);
  ASSERT_TRUE(env->Step(Scalar::F32(-3.0f), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs[0], 0.5);
  EXPECT_TRUE(done);
  EXPECT_TRUE(env->truncated());
  EXPECT_EQ(env->steps(), 3);
  EXPECT_FALSE(env->Step(Scalar::F32(0), &obs, &reward, &done, &error));
  EXPECT_FALSE(env->Step(Scalar::I64(0), &obs, &reward, &done, &error));
  env->Reset();
  EXPECT_FALSE(env->truncated());
  EXPECT_FALSE(env->Step(Scalar::F32(std::nanf("")), &obs, &reward, &done, &error));
  EXPECT_NE(error.find("NaN"), std::string::npos) << error;
  ASSERT_TRUE(env->Step(Scalar::F32(0.25f), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs[0], 0.25);
}

const char* kDraws = R"(
env draws {
  state {
    u: f32 = uniform(-0.05, 0.05)
    w: f64 = uniform(2.0, 3.0)
    n: i64 = randint(-3, 4)
    m: i32 = randint(0, 2)
    k: i64 = choice(5, 7, 11)
    f: bool = choice(true, false)
    z: f32 = 3
    q: bool = true
  }
  action discrete(2)
  observe [u, w, n, m, k, f, z, q]
  step(a) {
    reward 0.0
    done true
  }
}
)";

TEST(Env, ResetDrawsWithinBoundsAndRepeatsWithTheSameSeed) {
  auto b = Build(testing::CompilePlan(WithStages(kDraws, {"draws"})));
  ASSERT_TRUE(b->envs) << b->error;
  const EnvSpec* spec = b->envs->Find("draws");
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->state[0].init.kind, EnvInit::Kind::Uniform);
  EXPECT_EQ(spec->state[2].init.kind, EnvInit::Kind::RandInt);
  EXPECT_EQ(spec->state[4].init.kind, EnvInit::Kind::Choice);
  EXPECT_EQ(spec->state[6].init.kind, EnvInit::Kind::Constant);
  auto e1 = b->envs->NewInstance("draws", 99);
  auto e2 = b->envs->NewInstance("draws", 99);
  auto e3 = b->envs->NewInstance("draws", 100);
  std::set<int64_t> ns, ms, ks, fs;
  bool differs = false;
  std::vector<std::vector<double>> first;
  for (int r = 0; r < 400; ++r) {
    if (r > 0) {
      e1->Reset();
      e2->Reset();
      e3->Reset();
    }
    std::vector<double> o = e1->Observe();
    first.push_back(o);
    EXPECT_EQ(o, e2->Observe());  // the same seed draws the same states
    if (o != e3->Observe()) differs = true;
    EXPECT_EQ(e1->state()[0].type, ScalarType::F32);
    EXPECT_EQ(static_cast<double>(static_cast<float>(o[0])), o[0]);  // an f32 value
    EXPECT_GE(o[0], static_cast<double>(static_cast<float>(-0.05)));
    EXPECT_LE(o[0], static_cast<double>(static_cast<float>(0.05)));
    EXPECT_GE(o[1], 2.0);
    EXPECT_LE(o[1], 3.0);
    EXPECT_GE(o[2], -3);
    EXPECT_LE(o[2], 3);
    ns.insert(static_cast<int64_t>(o[2]));
    ms.insert(static_cast<int64_t>(o[3]));
    ks.insert(static_cast<int64_t>(o[4]));
    fs.insert(static_cast<int64_t>(o[5]));
    EXPECT_EQ(o[6], 3.0);
    EXPECT_EQ(o[7], 1.0);
    EXPECT_EQ(e1->state()[3].type, ScalarType::I32);
    EXPECT_EQ(e1->state()[5].type, ScalarType::Bool);
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(ns, (std::set<int64_t>{-3, -2, -1, 0, 1, 2, 3}));  // randint's high is exclusive
  EXPECT_EQ(ms, (std::set<int64_t>{0, 1}));
  EXPECT_EQ(ks, (std::set<int64_t>{5, 7, 11}));
  EXPECT_EQ(fs, (std::set<int64_t>{0, 1}));
  // A step that assigns nothing leaves every field as it was (its outputs are the parameters' slots).
  std::vector<double> before = e1->Observe(), obs;
  double reward = 1;
  bool done = false;
  std::string error;
  ASSERT_TRUE(e1->Step(Scalar::I64(1), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs, before);
  EXPECT_EQ(reward, 0.0);
  EXPECT_TRUE(done);
  // Reset(seed) starts the sequence again.
  e1->Reset(99);
  EXPECT_EQ(e1->Observe(), first[0]);
  e1->Reset();
  EXPECT_EQ(e1->Observe(), first[1]);
}

TEST(Env, DivisionByZeroInAStepNamesTheLocation) {
  const std::string text = WithStages(R"(
env div {
  state {
    n: i64 = 2
    q: i64 = 0
  }
  action discrete(2)
  observe [n, q]
  step(a) {
    n = n - 1
    q = 10 / n
    reward q
    done false
  }
}
)",
                                      {"div"});
  auto b = Build(testing::CompilePlan(text, "envs/div.mlp"));
  ASSERT_TRUE(b->envs) << b->error;
  auto env = b->envs->NewInstance("div", 1);
  std::vector<double> obs;
  double reward = 0;
  bool done = false;
  std::string error;
  ASSERT_TRUE(env->Step(Scalar::I64(0), &obs, &reward, &done, &error)) << error;
  EXPECT_EQ(obs, (std::vector<double>{1, 10}));
  EXPECT_FALSE(env->Step(Scalar::I64(0), &obs, &reward, &done, &error));
  EXPECT_EQ(error, Where("envs/div.mlp", text, "10 / n") + ": integer division by zero (in env `div`)");
  // The failed step changed nothing.
  EXPECT_EQ(env->Observe(), (std::vector<double>{1, 10}));
  EXPECT_EQ(env->steps(), 1);
}

const char* kWalk = R"(
kernel half(v: f32) -> f32 {
  v / 2.0
}

env walk {
  state { x: f32 = 0.0 }
  action discrete(2)
  observe [x]
  step(a) {
    x = half(x) + 0.1
    reward 1.0
    done x > 1.0
  }
  max_steps = 10
}
)";

// The env's source in the plan, with `from` replaced by `to`.
plan::v1::Plan Mutated(const plan::v1::Plan& plan, const std::string& from, const std::string& to) {
  plan::v1::Plan p = plan;
  std::string* src = p.mutable_envs(0)->mutable_source();
  size_t pos = src->find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) src->replace(pos, from.size(), to);
  return p;
}

std::string Refusal(const plan::v1::Plan& plan) {
  auto b = Build(plan);
  EXPECT_FALSE(b->envs);
  return b->error;
}

TEST(Env, ErrorsInAStepSourceAreRefusedWithTheirLocation) {
  const std::string text = WithStages(kWalk, {"walk"});
  const plan::v1::Plan plan = testing::CompilePlan(text, "walk.mlp");
  ASSERT_EQ(plan.envs_size(), 1);
  {
    auto b = Build(plan);
    ASSERT_TRUE(b->envs) << b->error;
    auto env = b->envs->NewInstance("walk", 3);
    std::vector<double> obs;
    double reward = 0;
    bool done = false;
    std::string error;
    ASSERT_TRUE(env->Step(Scalar::I64(1), &obs, &reward, &done, &error)) << error;
    EXPECT_EQ(obs[0], static_cast<double>(0.0f / 2.0f + 0.1f));
  }
  std::string at = Where("walk.mlp", text, "x = half");
  EXPECT_EQ(Refusal(Mutated(plan, "x = half(x)", "y = half(x)")),
            at + ": `y` is not a state field; only state fields can be assigned (in env `walk`)");
  EXPECT_EQ(Refusal(Mutated(plan, "x = half(x)", "a = half(x)")),
            at + ": `a` is not a state field; only state fields can be assigned (in env `walk`)");
  EXPECT_EQ(Refusal(Mutated(plan, "half(x)", "halve(x)")),
            Where("walk.mlp", text, "half(x) + 0.1") + ": unknown kernel `halve` (not in the plan) (in env `walk`)");
  EXPECT_EQ(Refusal(Mutated(plan, "half(x) + 0.1", "half(x) + y")),
            Where("walk.mlp", text, "0.1\n    reward") + ": unknown name `y` (in env `walk`)");
  EXPECT_EQ(Refusal(Mutated(plan, "half(x) + 0.1", "half(x) + f64(1)")),
            Where("walk.mlp", text, "half(x) + 0.1") + ": mismatched types `f32` and `f64` in `+` (in env `walk`)");
  // An integer literal meets the f32 sum: still fine.
  auto b = Build(Mutated(plan, "half(x) + 0.1", "half(x) + 1"));
  EXPECT_TRUE(b->envs) << b->error;
}

TEST(Env, StepStatementsAreCheckedAgain) {
  const std::string text = WithStages(kWalk, {"walk"});
  const plan::v1::Plan plan = testing::CompilePlan(text, "walk.mlp");
  ASSERT_EQ(plan.envs_size(), 1);
  auto refused = [&](const std::string& from, const std::string& to, const std::string& want) {
    std::string error = Refusal(Mutated(plan, from, to));
    EXPECT_NE(error.find(want), std::string::npos) << "got: " << error;
    EXPECT_NE(error.find("(in env `walk`)"), std::string::npos) << error;
    EXPECT_EQ(error.rfind("walk.mlp:", 0), 0u) << error;
  };
  refused("    reward 1.0\n", "", "has no `reward`");
  refused("    done x > 1.0\n", "", "has no `done`");
  refused("reward 1.0", "reward 1.0\n    reward 2.0", "`reward` is set twice");
  refused("reward 1.0", "reward true", "`reward` needs a number");
  refused("done x > 1.0", "done x", "`done` needs a bool, but it is `f32`");
  refused("x = half(x) + 0.1", "x = 1 > 0", "state field `x` is `f32`, but the value is `bool`");
  refused("x = half(x) + 0.1", "x = f64(x)", "state field `x` is `f32`, but the value is `f64`");
  refused("x = half(x) + 0.1", "let x = 1.0", "`x` is already defined");
  refused("x = half(x) + 0.1", "let y = if a == 1 { x = 2.0\n 1.0 } else { 0.0 }", "top level of `step`");
  refused("done x > 1.0", "done x > 1.0\n    x", "has no result");
}

TEST(Env, ACorruptPlanIsRefusedWithAMessage) {
  const std::string text = WithStages(kWalk, {"walk"});
  const plan::v1::Plan plan = testing::CompilePlan(text, "walk.mlp");
  ASSERT_EQ(plan.envs_size(), 1);
  auto refused = [&](const plan::v1::Plan& p, const std::string& want) {
    std::string error = Refusal(p);
    EXPECT_NE(error.find(want), std::string::npos) << "got: " << error;
  };
  refused(Mutated(plan, "env walk", "env run"), "its source declares `run`");
  refused(Mutated(plan, "env walk {", "kernel walk(x: f32) -> f32 { x }\nenv other {"), "exactly one env");
  refused(Mutated(plan, "x: f32 = 0.0", "x: f64 = 0.0"), "state fields differ");
  refused(Mutated(plan, "step(a)", "step(x)"), "the step parameter `x` has the name of a state field");
  refused(Mutated(plan, "step(a) {", "step(a) { )"), "walk.mlp:");
  {
    plan::v1::Plan p = plan;
    p.mutable_envs(0)->mutable_state(0)->set_type("f16");
    refused(p, "unknown type `f16`");
  }
  {
    plan::v1::Plan p = plan;
    p.mutable_envs(0)->mutable_state(0)->mutable_init()->set_bool_value(true);
    refused(p, "state field `x` is `f32`, but its initial value is true");
  }
  {
    plan::v1::Plan p = plan;
    p.mutable_envs(0)->set_observe(0, "speed");
    refused(p, "`observe` lists `speed`");
  }
  {
    plan::v1::Plan p = plan;
    p.mutable_envs(0)->mutable_action()->mutable_call()->set_op("box");
    refused(p, "`box` needs finite bounds");
  }
  {
    plan::v1::Plan p = plan;
    p.mutable_envs(0)->mutable_action()->set_int_value(2);
    refused(p, "actions are discrete(n)");
  }
  {
    plan::v1::Plan p = plan;
    p.mutable_envs(0)->mutable_settings(0)->mutable_value()->set_int_value(0);
    refused(p, "`max_steps` must be an integer >= 1");
  }
  {
    plan::v1::Plan p = plan;
    *p.add_envs() = p.envs(0);
    refused(p, "declares env `walk` twice");
  }
  {
    plan::v1::Plan p = plan;
    auto* init = p.mutable_envs(0)->mutable_state(0)->mutable_init()->mutable_call();
    init->set_op("uniform");
    refused(p, "`uniform` needs finite bounds");
  }
  // Every truncation of the source is refused (or, never, accepted), without a crash.
  const std::string src = plan.envs(0).source();
  for (size_t n = 0; n < src.size(); ++n) {
    plan::v1::Plan p = plan;
    p.mutable_envs(0)->set_source(src.substr(0, n));
    auto b = Build(p);
    EXPECT_FALSE(b->envs) << n;
    EXPECT_FALSE(b->error.empty()) << n;
  }
}

}  // namespace
}  // namespace mlp::rt::ops
