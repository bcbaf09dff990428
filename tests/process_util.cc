#include "tests/process_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace mlp::testing {

Process::~Process() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (!err_path_.empty()) unlink(err_path_.c_str());
}

bool Process::Start(const std::vector<std::string>& args) {
  static std::atomic<int> counter{0};
  err_path_ = "/tmp/mlpc_proc_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + ".err";
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return false;
  std::vector<std::string> all = {MLPC_BINARY};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);  // signals to the test's group do not reach it
    dup2(p[1], 1);
    int e = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (e >= 0) dup2(e, 2);
    if (chdir(MLP_SOURCE_DIR) != 0) _exit(126);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(p[1]);
  out_fd_ = p[0];
  return pid_ > 0;
}

void Process::Pump(int limit_ms) {
  if (out_fd_ < 0) return;
  pollfd pfd{out_fd_, POLLIN, 0};
  if (poll(&pfd, 1, limit_ms) <= 0) return;
  char buf[4096];
  ssize_t n = read(out_fd_, buf, sizeof buf);
  if (n > 0) {
    out_.append(buf, static_cast<size_t>(n));
  } else {
    close(out_fd_);
    out_fd_ = -1;
  }
}

std::string Process::WaitForLine(const std::string& needle, int limit_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms);
  while (true) {
    size_t pos;
    while ((pos = out_.find('\n', scanned_)) != std::string::npos) {
      std::string line = out_.substr(scanned_, pos - scanned_);
      scanned_ = pos + 1;
      if (line.find(needle) != std::string::npos) return line;
    }
    if (out_fd_ < 0 || std::chrono::steady_clock::now() > deadline) return "";
    Pump(100);
  }
}

int Process::Wait(int limit_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms);
  while (!reaped_) {
    if (out_fd_ >= 0) Pump(20);
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    if (out_fd_ < 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // What it printed last is still in the pipe.
  for (int i = 0; i < 100 && out_fd_ >= 0; ++i) Pump(10);
  return status_;
}

void Process::Signal(int sig) {
  if (pid_ > 0 && !reaped_) kill(pid_, sig);
}

bool Process::Running() {
  if (reaped_ || pid_ <= 0) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

std::string Process::err() const {
  std::ifstream in(err_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace mlp::testing
