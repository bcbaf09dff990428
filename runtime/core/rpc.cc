#include "runtime/core/rpc.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

namespace mlp::rt {
namespace {

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::string RandomToken() {
  unsigned char bytes[24];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char b : bytes) {
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

bool ReadTokenFile(const std::string& path, std::string* token, std::string* error) {
  std::string text;
  if (!ReadFile(path, &text)) {
    *error = "cannot read token file " + path;
    return false;
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  if (text.size() < 16 || text.size() > 4096 || text.find_first_of(" \t\r\n") != std::string::npos) {
    *error = "token file " + path + " must hold one token of 16 to 4096 characters without spaces";
    return false;
  }
  *token = text;
  return true;
}

bool EnsureTokenFile(const std::string& path, std::string* token, std::string* error) {
  if (access(path.c_str(), F_OK) == 0) return ReadTokenFile(path, token, error);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = "cannot create token file " + path;
    return false;
  }
  std::string t = RandomToken();
  std::string line = t + "\n";
  bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  close(fd);
  if (!ok) {
    *error = "cannot write token file " + path;
    return false;
  }
  *token = t;
  return true;
}

grpc::Status CheckToken(const grpc::ServerContext* ctx, const std::string& token) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(kTokenHeader);
  if (it == md.end())
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "no cluster token: pass --token-file with the cluster's token");
  std::string_view got(it->second.data(), it->second.size());
  if (!ConstantTimeEqual(got, token))
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong cluster token");
  return grpc::Status::OK;
}

void AddToken(grpc::ClientContext* ctx, const std::string& token) { ctx->AddMetadata(kTokenHeader, token); }

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const Security& sec) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Fail fast when the peer is gone instead of waiting for TCP timeouts.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (sec.tls.enabled() && address.rfind("unix:", 0) != 0) {
    grpc::SslCredentialsOptions o;
    std::string ca = sec.tls.ca_file.empty() ? sec.tls.cert_file : sec.tls.ca_file;
    ReadFile(ca, &o.pem_root_certs);
    creds = grpc::SslCredentials(o);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  return grpc::CreateCustomChannel(address, creds, args);
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const Security& sec, std::string* error) {
  if (sec.tls.cert_file.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  if (!ReadFile(sec.tls.cert_file, &pair.cert_chain)) {
    *error = "cannot read TLS certificate " + sec.tls.cert_file;
    return nullptr;
  }
  if (!ReadFile(sec.tls.key_file, &pair.private_key)) {
    *error = "cannot read TLS key " + sec.tls.key_file;
    return nullptr;
  }
  o.pem_key_cert_pairs.push_back(pair);
  return grpc::SslServerCredentials(o);
}

void ApplyServerLimits(grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder->SetMaxSendMessageSize(kMaxMessageBytes);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
}

std::unique_ptr<grpc::Server> StartServer(const std::string& listen, const std::string& advertise_host,
                                          const Security& sec, const std::vector<grpc::Service*>& services,
                                          std::string* address, std::string* error) {
  grpc::ServerBuilder builder;
  ApplyServerLimits(&builder);
  auto creds = MakeServerCredentials(sec, error);
  if (!creds) return nullptr;
  int port = 0;
  builder.AddListeningPort(listen, creds, &port);
  for (auto* s : services) builder.RegisterService(s);
  auto server = builder.BuildAndStart();
  if (!server) {
    *error = "cannot listen on " + listen;
    return nullptr;
  }
  if (listen.rfind("unix:", 0) == 0) {
    *address = listen;
  } else {
    std::string host = advertise_host.empty() ? listen.substr(0, listen.rfind(':')) : advertise_host;
    if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
    *address = HostPort(host, port);
  }
  return server;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t MonoUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string HostPort(const std::string& host, int port) { return host + ":" + std::to_string(port); }

}  // namespace mlp::rt
