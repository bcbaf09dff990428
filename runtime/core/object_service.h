// The ObjectTransfer service over a node's object store, and the client side
// that pulls an object from another node into the local store. Objects move
// in chunks: the receiver allocates the object's final buffer once and each
// chunk is copied straight into it, so a transfer holds no second copy.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "object.grpc.pb.h"
#include "runtime/core/rpc.h"
#include "runtime/objects/store.h"

namespace mlp::rt {

inline constexpr uint32_t kDefaultChunk = 1 << 20;
inline constexpr uint32_t kMaxChunk = 4 << 20;
// Largest object a peer may push or announce: objects beyond it are refused.
inline constexpr uint64_t kMaxObjectBytes = 64ull << 30;

class ObjectServiceImpl final : public v1::ObjectTransfer::Service {
 public:
  ObjectServiceImpl(objects::Store* store, const std::string* token) : store_(store), token_(token) {}
  grpc::Status Pull(grpc::ServerContext* ctx, const v1::PullRequest* req,
                    grpc::ServerWriter<v1::ObjectChunk>* writer) override;
  grpc::Status Push(grpc::ServerContext* ctx, grpc::ServerReader<v1::ObjectChunk>* reader,
                    v1::PushReply* reply) override;

 private:
  objects::Store* store_;
  const std::string* token_;
};

// Channels to other nodes' object servers, one per address, reused.
class ObjectClient {
 public:
  explicit ObjectClient(Security sec) : sec_(std::move(sec)) {}
  // Pulls `id` (of `size` bytes) from `address` into `store`.
  bool Pull(const std::string& address, const std::string& id, uint64_t size, objects::Store* store,
            std::string* error);
  // Pushes bytes to `address` as object `id`.
  bool Push(const std::string& address, const std::string& id, std::string_view bytes, std::string* error);

 private:
  v1::ObjectTransfer::Stub* StubFor(const std::string& address);
  Security sec_;
  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<v1::ObjectTransfer::Stub>> stubs_;
};

}  // namespace mlp::rt
