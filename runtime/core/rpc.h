// What every gRPC endpoint of the runtime shares: the cluster token (sent as
// `x-mlpc-token` metadata on every call and checked in constant time on every
// handler), channel and server credentials (TLS when a certificate is
// given), and message size limits so a peer cannot make us allocate
// arbitrarily large messages.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

namespace mlp::rt {

// Largest gRPC message either side accepts. Objects move in chunks well below
// it; plans of 100,000 stages stay below it too.
inline constexpr int kMaxMessageBytes = 64 << 20;
inline constexpr char kTokenHeader[] = "x-mlpc-token";

struct TlsOptions {
  std::string cert_file;  // PEM; server side: this node's certificate
  std::string key_file;   // PEM; server side only
  std::string ca_file;    // PEM; client side: the CA (or self-signed cert) to trust
  bool enabled() const { return !cert_file.empty() || !ca_file.empty(); }
};

struct Security {
  std::string token;
  TlsOptions tls;
};

// Reads a token file: one line, at least 16 characters, no whitespace inside.
bool ReadTokenFile(const std::string& path, std::string* token, std::string* error);
// Creates a token file with a new random token (mode 0600) if it does not exist.
bool EnsureTokenFile(const std::string& path, std::string* token, std::string* error);
std::string RandomToken();

// Returns OK when the call carries the token, UNAUTHENTICATED otherwise.
grpc::Status CheckToken(const grpc::ServerContext* ctx, const std::string& token);
void AddToken(grpc::ClientContext* ctx, const std::string& token);

// `address`: host:port or unix:/path.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const Security& sec);
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const Security& sec, std::string* error);
void ApplyServerLimits(grpc::ServerBuilder* builder);
// Starts a server on `listen` (host:port, port 0 picks one, or unix:/path)
// with the limits and credentials above. `address` is where others reach it:
// `advertise_host` (or the listen host; 127.0.0.1 for a wildcard) and the port.
std::unique_ptr<grpc::Server> StartServer(const std::string& listen, const std::string& advertise_host,
                                          const Security& sec, const std::vector<grpc::Service*>& services,
                                          std::string* address, std::string* error);

// Milliseconds since the Unix epoch; and a monotonic clock in microseconds.
int64_t NowMs();
int64_t MonoUs();

// "unix:/path" or "127.0.0.1:PORT" for the given bound port.
std::string HostPort(const std::string& host, int port);

}  // namespace mlp::rt
