#include "runtime/core/object_service.h"

#include <cstring>

namespace mlp::rt {

grpc::Status ObjectServiceImpl::Pull(grpc::ServerContext* ctx, const v1::PullRequest* req,
                                     grpc::ServerWriter<v1::ObjectChunk>* writer) {
  if (auto st = CheckToken(ctx, *token_); !st.ok()) return st;
  auto size = store_->SizeOf(req->object_id());
  if (!size) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no object " + req->object_id().substr(0, 200));
  uint64_t chunk = req->chunk_size() == 0 ? kDefaultChunk : std::min<uint32_t>(req->chunk_size(), kMaxChunk);
  uint64_t off = req->offset();
  if (off > *size) return grpc::Status(grpc::StatusCode::OUT_OF_RANGE, "offset beyond the object's end");
  v1::ObjectChunk msg;
  std::string error;
  bool first = true;
  do {
    uint64_t n = std::min<uint64_t>(chunk, *size - off);
    msg.Clear();
    if (first) {
      msg.set_object_id(req->object_id());
      msg.set_total_size(*size);
    }
    msg.set_offset(off);
    if (!store_->Read(req->object_id(), off, n, msg.mutable_data(), &error))
      return grpc::Status(grpc::StatusCode::NOT_FOUND, error);
    if (!writer->Write(msg)) return grpc::Status(grpc::StatusCode::CANCELLED, "the reader went away");
    off += n;
    first = false;
  } while (off < *size && !ctx->IsCancelled());
  return grpc::Status::OK;
}

grpc::Status ObjectServiceImpl::Push(grpc::ServerContext* ctx, grpc::ServerReader<v1::ObjectChunk>* reader,
                                     v1::PushReply* reply) {
  if (auto st = CheckToken(ctx, *token_); !st.ok()) return st;
  v1::ObjectChunk msg;
  if (!reader->Read(&msg)) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty push");
  std::string id = msg.object_id();
  uint64_t total = msg.total_size();
  if (id.empty() || id.size() > 512) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad object id");
  if (total > kMaxObjectBytes) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "object too large");
  std::string error;
  auto buf = objects::Buffer::Create(total, &error);
  if (!buf) return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, error);
  uint64_t got = 0;
  do {
    if (msg.offset() != got || msg.data().size() > total - got)
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "chunks out of order or beyond the object's size");
    if (!msg.data().empty()) std::memcpy(buf->mutable_data() + got, msg.data().data(), msg.data().size());
    got += msg.data().size();
  } while (got < total && reader->Read(&msg));
  if (got != total) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "push ended before the object's end");
  if (!store_->Put(id, std::move(buf), &error)) return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, error);
  reply->set_size(total);
  return grpc::Status::OK;
}

v1::ObjectTransfer::Stub* ObjectClient::StubFor(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& s = stubs_[address];
  if (!s) s = v1::ObjectTransfer::NewStub(MakeChannel(address, sec_));
  return s.get();
}

bool ObjectClient::Pull(const std::string& address, const std::string& id, uint64_t size, objects::Store* store,
                        std::string* error) {
  if (size > kMaxObjectBytes) {
    *error = "object too large";
    return false;
  }
  auto buf = objects::Buffer::Create(size, error);
  if (!buf) return false;
  uint64_t got = 0;
  for (int attempt = 0; attempt < 3 && (got < size || attempt == 0); ++attempt) {
    grpc::ClientContext ctx;
    AddToken(&ctx, sec_.token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30 + size / (16 << 20)));
    v1::PullRequest req;
    req.set_object_id(id);
    req.set_offset(got);
    auto reader = StubFor(address)->Pull(&ctx, req);
    v1::ObjectChunk chunk;
    bool bad = false;
    while (reader->Read(&chunk)) {
      if (chunk.offset() != got || chunk.data().size() > size - got || (chunk.total_size() && chunk.total_size() != size)) {
        bad = true;
        ctx.TryCancel();
        break;
      }
      if (!chunk.data().empty()) std::memcpy(buf->mutable_data() + got, chunk.data().data(), chunk.data().size());
      got += chunk.data().size();
    }
    grpc::Status st = reader->Finish();
    if (bad) {
      *error = "object " + id + " from " + address + ": chunks do not match its size";
      return false;
    }
    if (!st.ok()) {
      *error = "pull " + id + " from " + address + ": " + st.error_message();
      if (st.error_code() == grpc::StatusCode::NOT_FOUND || st.error_code() == grpc::StatusCode::UNAUTHENTICATED)
        return false;
      continue;  // a broken stream resumes from `got`
    }
    if (got == size) break;
  }
  if (got != size) {
    if (error->empty()) *error = "pull " + id + " from " + address + ": short object";
    return false;
  }
  return store->Put(id, std::move(buf), error);
}

bool ObjectClient::Push(const std::string& address, const std::string& id, std::string_view bytes,
                        std::string* error) {
  grpc::ClientContext ctx;
  AddToken(&ctx, sec_.token);
  v1::PushReply reply;
  auto writer = StubFor(address)->Push(&ctx, &reply);
  uint64_t off = 0;
  v1::ObjectChunk chunk;
  do {
    size_t n = std::min<size_t>(kDefaultChunk, bytes.size() - off);
    chunk.Clear();
    if (off == 0) {
      chunk.set_object_id(id);
      chunk.set_total_size(bytes.size());
    }
    chunk.set_offset(off);
    chunk.set_data(bytes.data() + off, n);
    if (!writer->Write(chunk)) break;
    off += n;
  } while (off < bytes.size());
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (!st.ok()) {
    *error = "push " + id + " to " + address + ": " + st.error_message();
    return false;
  }
  return true;
}

}  // namespace mlp::rt
