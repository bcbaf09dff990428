#include "runtime/core/functions.h"

#include <csignal>
#include <cstdlib>
#include <map>
#include <thread>

namespace mlp::rt {
namespace {

bool ParseInt(std::string_view s, long long* out) {
  if (s.empty() || s.size() > 18) return false;
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

class Counter : public Actor {
 public:
  explicit Counter(long long start) : value_(start) {}
  bool Call(std::string_view method, std::string_view args, std::string* result, std::string* error) override {
    if (method == "noop") return true;
    if (method == "crash") std::raise(SIGSEGV);  // for tests of the restart policy
    if (method == "get") {
      *result = std::to_string(value_);
      return true;
    }
    if (method == "add") {
      long long n = 0;
      if (!ParseInt(args, &n)) {
        *error = "counter.add: argument must be a non-negative integer";
        return false;
      }
      value_ += n;
      *result = std::to_string(value_);
      return true;
    }
    *error = "counter has no method `" + std::string(method) + "`";
    return false;
  }

 private:
  long long value_;
};

const std::map<std::string, TaskFunction, std::less<>>& Functions() {
  static const auto* m = new std::map<std::string, TaskFunction, std::less<>>{
      {"noop", [](std::string_view, std::string*, std::string*) { return true; }},
      {"echo",
       [](std::string_view a, std::string* r, std::string*) {
         r->assign(a);
         return true;
       }},
      {"sleep_ms",
       [](std::string_view a, std::string*, std::string* e) {
         long long ms = 0;
         if (!ParseInt(a, &ms)) {
           *e = "sleep_ms: argument must be milliseconds";
           return false;
         }
         std::this_thread::sleep_for(std::chrono::milliseconds(ms));
         return true;
       }},
      {"inc",
       [](std::string_view a, std::string* r, std::string* e) {
         long long v = 0;
         if (!a.empty() && !ParseInt(a, &v)) {
           *e = "inc: argument must be a non-negative integer";
           return false;
         }
         *r = std::to_string(v + 1);
         return true;
       }},
      {"fail",
       [](std::string_view a, std::string*, std::string* e) {
         *e = "fail: " + std::string(a);
         return false;
       }},
      {"segfault",
       [](std::string_view, std::string*, std::string*) {
         std::raise(SIGSEGV);
         return false;
       }},
  };
  return *m;
}

const std::map<std::string, ActorFactory, std::less<>>& ActorClasses() {
  static const auto* m = new std::map<std::string, ActorFactory, std::less<>>{
      {"counter",
       [](std::string_view args, std::string* error) -> std::unique_ptr<Actor> {
         long long start = 0;
         if (!args.empty() && !ParseInt(args, &start)) {
           *error = "counter: the start value must be a non-negative integer";
           return nullptr;
         }
         return std::make_unique<Counter>(start);
       }},
  };
  return *m;
}

}  // namespace

const TaskFunction* FindFunction(std::string_view name) {
  auto it = Functions().find(name);
  return it == Functions().end() ? nullptr : &it->second;
}

const ActorFactory* FindActorClass(std::string_view name) {
  auto it = ActorClasses().find(name);
  return it == ActorClasses().end() ? nullptr : &it->second;
}

}  // namespace mlp::rt
