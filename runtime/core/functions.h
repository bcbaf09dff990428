// Task functions and actor classes callable through the client API (the
// plan's stages run through the operator registry in runtime/ops instead).
// The builtins serve the benchmarks and the tests: no-op, echo, sleep, crash,
// and a counter actor.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mlp::rt {

using TaskFunction = std::function<bool(std::string_view args, std::string* result, std::string* error)>;

class Actor {
 public:
  virtual ~Actor() = default;
  virtual bool Call(std::string_view method, std::string_view args, std::string* result, std::string* error) = 0;
};
using ActorFactory = std::function<std::unique_ptr<Actor>(std::string_view args, std::string* error)>;

const TaskFunction* FindFunction(std::string_view name);
const ActorFactory* FindActorClass(std::string_view name);

}  // namespace mlp::rt
