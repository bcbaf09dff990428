// The trainer plugin's API for tests; a test that cannot load it fails and stops.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "runtime/train/trainer.h"

namespace mlp::rt::train {

inline const TrainerApi& Api() {
  std::string error;
  const TrainerApi* api = LoadTrainer(&error);
  if (!api) {
    ADD_FAILURE() << error;
    std::abort();
  }
  return *api;
}

}  // namespace mlp::rt::train
