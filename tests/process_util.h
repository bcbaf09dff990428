// Real child processes for the runtime's integration tests: start `mlpc head`
// / `mlpc worker` / `mlpc submit`, read what they print, signal them, and
// reap them. Every wait has a generous limit so a bug shows as a failure,
// never as a hung test; none asserts how fast anything is.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace mlp::testing {

class Process {
 public:
  Process() = default;
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Starts MLPC_BINARY with `args`, in MLP_SOURCE_DIR; stdout and stderr are
  // captured (stderr into a file read by err()).
  bool Start(const std::vector<std::string>& args);
  // Reads stdout until a line contains `needle`; returns that line, or "" after
  // `limit_ms` or when the process ended.
  std::string WaitForLine(const std::string& needle, int limit_ms = 30000);
  // Waits for the exit; returns the exit code, 128+signal, or -1 after limit_ms.
  int Wait(int limit_ms = 120000);
  void Signal(int sig);
  bool Running();
  pid_t pid() const { return pid_; }
  const std::string& out() const { return out_; }
  std::string err() const;

 private:
  void Pump(int limit_ms);
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string err_path_;
  std::string out_;
  size_t scanned_ = 0;
  int status_ = -1;
  bool reaped_ = false;
};

}  // namespace mlp::testing
