// The physical reference for bench/jit_bench: the same loops and the same
// CartPole step hand-written in C++, compiled by g++ with -O2 (and no -march:
// what a C++ user gets by default). A separate file, so nothing inlines them
// into the benchmark's timing loops.
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace mlp::bench {

void RefNormalize(const float* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = (in[i] / 255.0f - 0.2860f) / 0.3530f;
}

void RefHeavy(const float* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    float t = in[i] / 255.0f;
    out[i] = std::exp(-t * t) * std::sin(3.0f * t) + std::tanh(t - 0.5f);
  }
}

struct CartPoleState {
  float x, x_dot, theta, theta_dot;
};

// pipelines/custom_env_rl.mlp's `pole` step, operation by operation.
bool RefCartPoleStep(CartPoleState& s, int64_t a, double* reward) {
  const float gravity = 9.8f, mass_cart = 1.0f, mass_pole = 0.1f, half_length = 0.5f, force_mag = 10.0f,
              tau = 0.02f;
  const float total_mass = mass_cart + mass_pole;
  const float pole_moment = mass_pole * half_length;
  float force = a == 1 ? force_mag : -force_mag;
  float cos_t = std::cos(s.theta), sin_t = std::sin(s.theta);
  float temp = (force + pole_moment * (s.theta_dot * s.theta_dot) * sin_t) / total_mass;
  float denom = half_length * (4.0f / 3.0f - mass_pole * (cos_t * cos_t) / total_mass);
  float theta_acc = (gravity * sin_t - cos_t * temp) / denom;
  float x_acc = temp - pole_moment * theta_acc * cos_t / total_mass;
  s.x = s.x + tau * s.x_dot;
  s.x_dot = s.x_dot + tau * x_acc;
  s.theta = s.theta + tau * s.theta_dot;
  s.theta_dot = s.theta_dot + tau * theta_acc;
  *reward = 1.0;
  return std::fabs(s.theta) > 12.0f * 3.14159265f / 180.0f || std::fabs(s.x) > 2.4f;
}

}  // namespace mlp::bench
