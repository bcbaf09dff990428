#include "runtime/core/local_link.h"

#include <cstdlib>
#include <map>

namespace mlp::rt {

template <typename Fn, typename Msg>
bool LocalLink::Deliver(const Fn& target, int* in_flight, const Msg& m) {
  Fn fn;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!target) return false;
    fn = target;  // a copy: the side may detach while it runs
    ++*in_flight;
  }
  fn(m);
  {
    std::lock_guard<std::mutex> l(mu_);
    --*in_flight;
  }
  cv_.notify_all();
  return true;
}

bool LocalLink::ToWorker(const v1::ToWorker& m) { return Deliver(agent_, &to_worker_, m); }

void LocalLink::AttachHead(FromWorkerFn sink, std::function<void()> closed) {
  std::function<void()> attach;
  {
    std::lock_guard<std::mutex> l(mu_);
    head_ = std::move(sink);
    closed_ = std::move(closed);
    attach = on_attach_;
  }
  if (attach) attach();
}

void LocalLink::DetachHead(bool wait) {
  std::unique_lock<std::mutex> l(mu_);
  head_ = nullptr;
  closed_ = nullptr;
  if (wait) cv_.wait(l, [&] { return from_worker_ == 0; });
}

bool LocalLink::FromWorker(const v1::FromWorker& m) { return Deliver(head_, &from_worker_, m); }

void LocalLink::CloseAgent() {
  std::function<void()> closed;
  {
    std::unique_lock<std::mutex> l(mu_);
    agent_ = nullptr;
    on_attach_ = nullptr;
    closed.swap(closed_);
    cv_.wait(l, [&] { return to_worker_ == 0; });
  }
  if (closed) closed();
}

namespace {

std::mutex g_mu;
std::map<std::string, std::shared_ptr<LocalLink>>& Table() {
  static auto* t = new std::map<std::string, std::shared_ptr<LocalLink>>;
  return *t;
}

}  // namespace

std::shared_ptr<LocalLink> RegisterLocalAgent(const std::string& address, LocalLink::ToWorkerFn agent,
                                              std::function<void()> on_attach) {
  auto link = std::make_shared<LocalLink>(std::move(agent), std::move(on_attach));
  std::lock_guard<std::mutex> l(g_mu);
  Table()[address] = link;
  return link;
}

void UnregisterLocalAgent(const std::string& address) {
  std::lock_guard<std::mutex> l(g_mu);
  Table().erase(address);
}

std::shared_ptr<LocalLink> FindLocalAgent(const std::string& address) {
  // MLPC_LOCAL_LINK=0 sends in-process agents through gRPC too (to measure or debug that path).
  static const bool off = [] {
    const char* v = std::getenv("MLPC_LOCAL_LINK");
    return v && std::string(v) == "0";
  }();
  if (off) return nullptr;
  std::lock_guard<std::mutex> l(g_mu);
  auto it = Table().find(address);
  return it == Table().end() ? nullptr : it->second;
}

}  // namespace mlp::rt
