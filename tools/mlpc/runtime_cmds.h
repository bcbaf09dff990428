// The runtime's subcommands: run, head, worker, submit, status, runs, logs,
// explain. main.cc owns flag parsing for the compiler's subcommands and hands
// these their compiled plan through `CompileFn`.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace mlpc {

// Exit codes of the runtime commands.
inline constexpr int kExitStageFailed = 1;
inline constexpr int kExitCompile = 3;
inline constexpr int kExitUnreachable = 5;
inline constexpr int kExitInterrupted = 130;

// Compiles `file` to a serialized plan. Returns 0, or an exit code after
// printing the diagnostics.
using CompileFn = std::function<int(const std::string& file, std::string* plan_bytes, std::string* source_text)>;

struct RuntimeFlags {
  std::string file, cluster, token_file, run_root = ".mlpc", json_out, resume, stage, run_id;
  std::string tls_cert, tls_key, tls_ca;
  std::string jit;  // auto|on|off for this machine's executors (empty: $MLPC_JIT, else auto)
  std::string host = "127.0.0.1", memory, object_store, listen;
  int port = 0;
  double cpus = -1, gpus = 0;
  int workers = 1;
  std::vector<std::string> resources, labels;
  std::vector<std::string> targets;  // --target: run only these stages and what they need
  bool no_cache = false, detach = false, json = false;
  int heartbeat_timeout_ms = 3000;
};

struct RuntimeCommands {
  CLI::App *run = nullptr, *head = nullptr, *worker = nullptr, *submit = nullptr, *status = nullptr,
           *runs = nullptr, *logs = nullptr, *explain = nullptr;
};

// Adds the subcommands; `add_common` adds --set/--params/-I to those that compile.
RuntimeCommands AddRuntimeCommands(CLI::App& app, RuntimeFlags& flags, const std::function<void(CLI::App*)>& add_common);
// Runs whichever of them was parsed; -1 when none was.
int RunRuntimeCommand(const RuntimeCommands& cmds, RuntimeFlags& flags, const CompileFn& compile);

}  // namespace mlpc
