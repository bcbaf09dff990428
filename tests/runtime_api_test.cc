// The head and a worker agent in this process (their executors are real
// processes of the mlpc binary), driven through the client API: tasks,
// dependencies, actors and their restart, placement groups, and the RPC edge
// (wrong tokens, garbage and oversized messages).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <grpcpp/generic/generic_stub.h>

#include "head.grpc.pb.h"
#include "runtime/core/agent.h"
#include "runtime/core/head.h"
#include "runtime/core/object_service.h"
#include "runtime/core/rpc.h"
#include "runtime/objects/store.h"
#include "worker.grpc.pb.h"

namespace mlp::rt {
namespace {

namespace fs = std::filesystem;

class Local : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() / ("mlpc_api_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
    HeadOptions ho;
    ho.listen = "unix:" + (dir_ / "head.sock").string();
    ho.sec.token = "test-token-0123456789";
    ho.state_dir = (dir_ / "state").string();
    head_ = std::make_unique<Head>(ho);
    std::string error;
    ASSERT_TRUE(head_->Start(&error)) << error;
    AddWorker(2);
  }
  void TearDown() override {
    for (auto& a : agents_) a->Shutdown();
    head_->Shutdown();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Agent* AddWorker(int cpus) {
    AgentOptions ao;
    ao.head = head_->address();
    ao.listen = "unix:" + (dir_ / ("w" + std::to_string(agents_.size()) + ".sock")).string();
    ao.sec.token = "test-token-0123456789";
    ao.resources.set_cpu_milli(cpus * 1000);
    ao.resources.set_memory_bytes(1ll << 30);
    ao.executable = MLPC_BINARY;
    ao.spill_dir = (dir_ / ("spill" + std::to_string(agents_.size()))).string();
    fs::create_directories(ao.spill_dir);
    auto a = std::make_unique<Agent>(ao);
    std::string error;
    EXPECT_TRUE(a->Start(&error)) << error;
    agents_.push_back(std::move(a));
    return agents_.back().get();
  }

  v1::TaskResult Call(const std::string& fn, const std::string& args, std::vector<uint64_t> deps = {}) {
    std::promise<v1::TaskResult> p;
    TaskCall c;
    c.function = fn;
    c.args = args;
    c.resources.set_cpu_milli(1000);
    c.deps = std::move(deps);
    head_->SubmitTask(c, [&](const v1::TaskResult& r) { p.set_value(r); });
    auto f = p.get_future();
    EXPECT_EQ(f.wait_for(std::chrono::seconds(60)), std::future_status::ready);
    return f.get();
  }

  fs::path dir_;
  std::unique_ptr<Head> head_;
  std::vector<std::unique_ptr<Agent>> agents_;
};

TEST_F(Local, TasksRunAndReturnValues) {
  auto r = Call("echo", "hello");
  EXPECT_EQ(r.status(), v1::TaskResult::OK) << r.error();
  EXPECT_EQ(r.value(), "hello");
  auto bad = Call("no_such_function", "");
  EXPECT_EQ(bad.status(), v1::TaskResult::FAILED);
  EXPECT_NE(bad.error().find("no task function"), std::string::npos);
}

TEST_F(Local, ManyAsyncTasksAllComplete) {
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, ok = 0;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    TaskCall c;
    c.function = "echo";
    c.args = std::to_string(i);
    c.resources.set_cpu_milli(1000);
    head_->SubmitTask(c, [&, i](const v1::TaskResult& r) {
      std::lock_guard<std::mutex> l(mu);
      ++done;
      if (r.status() == v1::TaskResult::OK && r.value() == std::to_string(i)) ++ok;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(120), [&] { return done == n; }));
  EXPECT_EQ(ok, n);
}

TEST_F(Local, DependentChainPassesValues) {
  std::promise<v1::TaskResult> last;
  uint64_t prev = 0;
  const int n = 50;
  for (int i = 0; i < n; ++i) {
    TaskCall c;
    c.function = "inc";
    c.resources.set_cpu_milli(1000);
    if (i == 0) c.args = "0";
    else c.deps = {prev};
    prev = head_->SubmitTask(c, i == n - 1 ? Head::TaskDone([&](const v1::TaskResult& r) { last.set_value(r); })
                                            : Head::TaskDone());
  }
  auto f = last.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(f.get().value(), std::to_string(n));
}

TEST_F(Local, CrashingTaskIsRetriedOnAFreshProcess) {
  auto r = Call("segfault", "");
  // Every attempt crashes: after the retries the caller sees the crash, and the agent still serves.
  EXPECT_EQ(r.status(), v1::TaskResult::CRASHED);
  EXPECT_NE(r.error().find("signal 11"), std::string::npos) << r.error();
  EXPECT_EQ(Call("echo", "still here").value(), "still here");
}

TEST_F(Local, ActorKeepsStateAcrossCalls) {
  std::promise<bool> ready;
  v1::Resources res;
  res.set_cpu_milli(500);
  std::string id = head_->CreateActor("counter", "10", res, 0, [&](bool ok, const std::string&) { ready.set_value(ok); });
  ASSERT_TRUE(ready.get_future().get());
  std::vector<std::promise<v1::ActorCallResult>> ps(5);
  for (int i = 0; i < 5; ++i)
    head_->CallActor(id, "add", "1", [&ps, i](const v1::ActorCallResult& r) { ps[static_cast<size_t>(i)].set_value(r); });
  std::vector<std::string> got;
  for (auto& p : ps) got.push_back(p.get_future().get().value());
  EXPECT_EQ(got, (std::vector<std::string>{"11", "12", "13", "14", "15"}));
  std::promise<v1::ActorCallResult> bad;
  head_->CallActor(id, "nope", "", [&](const v1::ActorCallResult& r) { bad.set_value(r); });
  auto b = bad.get_future().get();
  EXPECT_FALSE(b.ok());
  EXPECT_NE(b.error().find("no method"), std::string::npos);
}

TEST_F(Local, ActorRestartsAfterItsProcessDies) {
  std::promise<bool> ready;
  v1::Resources res;
  res.set_cpu_milli(500);
  std::string id = head_->CreateActor("counter", "5", res, /*max_restarts=*/1,
                                      [&](bool ok, const std::string&) { ready.set_value(ok); });
  ASSERT_TRUE(ready.get_future().get());
  std::promise<v1::ActorCallResult> crashed;
  head_->CallActor(id, "crash", "", [&](const v1::ActorCallResult& r) { crashed.set_value(r); });
  auto c = crashed.get_future().get();
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.error().find("died"), std::string::npos) << c.error();
  // The restarted actor starts from its constructor arguments again.
  std::string value;
  for (int i = 0; i < 600 && value.empty(); ++i) {
    std::promise<v1::ActorCallResult> p;
    head_->CallActor(id, "get", "", [&](const v1::ActorCallResult& r) { p.set_value(r); });
    auto r = p.get_future().get();
    if (r.ok()) value = r.value();
    else std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(value, "5");
  // No restarts left: a second crash ends it for good.
  std::promise<v1::ActorCallResult> again;
  head_->CallActor(id, "crash", "", [&](const v1::ActorCallResult& r) { again.set_value(r); });
  again.get_future().get();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::promise<v1::ActorCallResult> gone;
  head_->CallActor(id, "get", "", [&](const v1::ActorCallResult& r) { gone.set_value(r); });
  EXPECT_FALSE(gone.get_future().get().ok());
}

// Agents in the head's process are reached through the in-process link; when
// one shuts down in the middle of a task, its node is lost like a node whose
// stream closed, and the task runs again on another agent.
TEST_F(Local, AnInProcessAgentThatShutsDownLosesItsNodeAndItsTaskMoves) {
  std::promise<v1::TaskResult> p;
  TaskCall c;
  c.function = "sleep_ms";
  c.args = "1500";
  c.resources.set_cpu_milli(2000);  // only a whole node holds it
  head_->SubmitTask(c, [&](const v1::TaskResult& r) { p.set_value(r); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // it starts on the only node
  AddWorker(2);
  agents_[0]->Shutdown();
  auto f = p.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  v1::TaskResult r = f.get();
  EXPECT_EQ(r.status(), v1::TaskResult::OK) << r.error();
  auto again = Call("echo", "still here");  // and the new agent keeps working
  EXPECT_EQ(again.value(), "still here");
}

TEST_F(Local, WorkerRejectsMalformedTaskSpecs) {
  Security sec;
  sec.token = "test-token-0123456789";
  auto stub = v1::Worker::NewStub(MakeChannel(agents_[0]->address(), sec));
  grpc::ClientContext ctx;
  AddToken(&ctx, sec.token);
  auto stream = stub->Execute(&ctx);
  v1::ToWorker msg;
  auto* bad_index = msg.add_tasks();
  bad_index->set_task_id("bad-1");
  bad_index->set_function("noop");
  bad_index->set_index(3);
  bad_index->set_count(2);
  auto* no_plan = msg.add_tasks();
  no_plan->set_task_id("bad-2");
  no_plan->set_count(1);
  no_plan->set_plan_id("never-sent");
  auto* negative = msg.add_tasks();
  negative->set_task_id("bad-3");
  negative->set_function("noop");
  negative->set_count(1);
  negative->mutable_resources()->set_cpu_milli(-1);
  ASSERT_TRUE(stream->Write(msg));
  std::map<std::string, v1::TaskResult> got;
  v1::FromWorker reply;
  while (got.size() < 3 && stream->Read(&reply))
    for (const auto& r : reply.results()) got[r.task_id()] = r;
  ASSERT_EQ(got.size(), 3u);
  for (const auto& [id, r] : got) EXPECT_EQ(r.status(), v1::TaskResult::REJECTED) << id;
  stream->WritesDone();
  ctx.TryCancel();
  stream->Finish();
}

TEST_F(Local, PlacementGroupsReserveAllOrNothing) {
  v1::Resources one;
  one.set_cpu_milli(1000);
  std::promise<std::pair<bool, std::string>> fits, too_big;
  std::string g = head_->CreatePlacementGroup(2, one, false, [&](bool ok, const std::string& e) { fits.set_value({ok, e}); });
  EXPECT_TRUE(fits.get_future().get().first);
  head_->CreatePlacementGroup(3, one, false, [&](bool ok, const std::string& e) { too_big.set_value({ok, e}); });
  auto tb = too_big.get_future().get();
  EXPECT_FALSE(tb.first);
  EXPECT_NE(tb.second.find("cpu"), std::string::npos) << tb.second;
  // While the group holds both cpus a task waits; removing the group lets it run.
  std::promise<v1::TaskResult> p;
  TaskCall c;
  c.function = "echo";
  c.args = "after";
  c.resources.set_cpu_milli(1000);
  head_->SubmitTask(c, [&](const v1::TaskResult& r) { p.set_value(r); });
  auto f = p.get_future();
  EXPECT_EQ(f.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  head_->RemovePlacementGroup(g);
  ASSERT_EQ(f.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(f.get().value(), "after");
}

// --- the RPC edge ----------------------------------------------------------------------------------

TEST_F(Local, WrongOrMissingTokenIsRefused) {
  Security sec;
  auto stub = v1::Head::NewStub(MakeChannel(head_->address(), sec));
  for (std::string token : {"", "wrong-token-0123456789"}) {
    grpc::ClientContext ctx;
    if (!token.empty()) AddToken(&ctx, token);
    v1::ClusterStatusReply reply;
    auto st = stub->ClusterStatus(&ctx, v1::ClusterStatusRequest(), &reply);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << token;
  }
}

grpc::Status RawCall(const std::string& address, const std::string& method, const std::string& bytes,
                     const std::string& token) {
  Security sec;
  grpc::GenericStub stub(MakeChannel(address, sec));
  grpc::ClientContext ctx;
  AddToken(&ctx, token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::Slice slice(bytes);
  grpc::ByteBuffer req(&slice, 1), resp;
  std::promise<grpc::Status> p;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) { p.set_value(s); });
  return p.get_future().get();
}

TEST_F(Local, GarbageAndOversizedMessagesAreRejected) {
  const std::string token = "test-token-0123456789";
  // Bytes that are not a valid protobuf message.
  std::string garbage = "\xff\xff\xff\xff\x0f garbage \x00\x01";
  auto st = RawCall(head_->address(), "/mlp.rt.v1.Head/SubmitJob", garbage, token);
  EXPECT_FALSE(st.ok());
  // A well-formed request whose plan is garbage.
  v1::SubmitJobRequest req;
  req.set_plan("definitely not a plan");
  std::string bytes;
  req.SerializeToString(&bytes);
  st = RawCall(head_->address(), "/mlp.rt.v1.Head/SubmitJob", bytes, token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("plan"), std::string::npos);
  // A node description with negative resources.
  v1::RegisterRequest reg;
  reg.mutable_node()->set_address("127.0.0.1:1");
  reg.mutable_node()->mutable_total()->set_cpu_milli(-5);
  reg.SerializeToString(&bytes);
  st = RawCall(head_->address(), "/mlp.rt.v1.Head/Register", bytes, token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A message beyond the size limit.
  std::string huge(kMaxMessageBytes + 1024, 'x');
  st = RawCall(head_->address(), "/mlp.rt.v1.Head/SubmitJob", huge, token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Everything still works.
  EXPECT_EQ(Call("echo", "alive").value(), "alive");
  EXPECT_EQ(head_->AliveNodes(), 1u);
}

TEST_F(Local, ObjectPushAndPullRoundTrip) {
  // 40 MiB through the chunked transfer into the worker's store and back.
  std::string data(40 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 2654435761u >> 24);
  Security sec;
  sec.token = "test-token-0123456789";
  ObjectClient client(sec);
  std::string error;
  ASSERT_TRUE(client.Push(agents_[0]->address(), "obj-1", data, &error)) << error;
  objects::Store local({64 << 20, (dir_ / "local").string()});
  fs::create_directories(dir_ / "local");
  ASSERT_TRUE(client.Pull(agents_[0]->address(), "obj-1", data.size(), &local, &error)) << error;
  auto buf = local.Get("obj-1");
  ASSERT_NE(buf, nullptr);
  EXPECT_EQ(buf->view(), data);
  EXPECT_FALSE(client.Pull(agents_[0]->address(), "missing", 10, &local, &error));
  EXPECT_NE(error.find("no object"), std::string::npos) << error;
}

}  // namespace
}  // namespace mlp::rt
