// Tests of the mlpc command line through the real binary: exit codes (0 ok,
// 1 errors in the input, 2 usage), where output goes, the output formats, and
// the files `compile` and `fmt` write.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "plan.pb.h"
#include "tests/test_util.h"

namespace mlp::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kQuickstart = "pipelines/quickstart.mlp";
constexpr const char* kFailFile = "tests/golden/fail_unknown_field.mlp";  // `epoch = 3` at 9:3
constexpr const char* kWarningsOnly = "tests/golden/unused_warnings.mlp";

// The JSON plan on stdout of `mlpc compile`, or a failed test.
json ParseJson(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON:\n" << text;
  return j;
}

std::vector<std::string> NodeNames(const json& plan) {
  std::vector<std::string> names;
  if (!plan.contains("nodes")) return names;
  for (const auto& n : plan["nodes"]) names.push_back(n.value("name", ""));
  return names;
}

// Protobuf JSON writes int64 as a string; accept both spellings.
int64_t IntOf(const json& v) {
  if (v.is_string()) return std::stoll(v.get<std::string>());
  return v.get<int64_t>();
}

const json* Param(const json& plan, const std::string& name) {
  if (!plan.contains("params")) return nullptr;
  for (const auto& p : plan["params"]) {
    if (p.value("name", "") == name) return &p["value"];
  }
  return nullptr;
}

// --- mlpc check: exit codes and streams

TEST(CliCheck, CleanPipelineExitsZeroAndPrintsNothing) {
  RunResult r = RunMlpc({"check", kQuickstart});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
}

TEST(CliCheck, ErrorsExitOneAndGoToStderr) {
  RunResult r = RunMlpc({"check", kFailFile});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "") << "diagnostics belong on stderr";
  EXPECT_NE(r.err.find(std::string(kFailFile) + ":9:3: error: unknown field `epoch`"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did you mean `epochs`?"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("^~~~~"), std::string::npos) << "a caret under the offending text:\n" << r.err;
  EXPECT_NE(r.err.find("1 error, 0 warnings"), std::string::npos) << r.err;
}

TEST(CliCheck, SeveralFilesFailIfAnyFails) {
  RunResult r = RunMlpc({"check", kQuickstart, kFailFile});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(kFailFile), std::string::npos);
}

TEST(CliCheck, MissingFileIsAUsageError) {
  RunResult r = RunMlpc({"check", "pipelines/no_such_pipeline.mlp"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no_such_pipeline.mlp"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliCheck, DirectoryIsAUsageError) {
  RunResult r = RunMlpc({"check", "pipelines"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is a directory"), std::string::npos) << r.err;
}

TEST(CliCheck, UnknownFlagIsAUsageError) {
  RunResult r = RunMlpc({"check", "--no-such-flag", kQuickstart});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--no-such-flag"), std::string::npos) << r.err;
}

TEST(CliCheck, UnknownSubcommandIsAUsageError) {
  RunResult r = RunMlpc({"chekc", kQuickstart});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(r.err.empty());
}

TEST(CliCheck, NoSubcommandIsAUsageError) {
  RunResult r = RunMlpc({});
  EXPECT_EQ(r.exit_code, 2);
}

TEST(CliCheck, SetWithoutEqualsIsAUsageError) {
  RunResult r = RunMlpc({"check", kQuickstart, "--set", "epochs"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("`--set epochs` must have the form NAME=VALUE"), std::string::npos) << r.err;
}

TEST(CliCheck, SetWithEmptyNameIsAUsageError) {
  RunResult r = RunMlpc({"check", kQuickstart, "--set", "=5"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("NAME=VALUE"), std::string::npos) << r.err;
}

TEST(CliCheck, BadFormatValueIsAUsageError) {
  RunResult r = RunMlpc({"check", "--format", "xml", kQuickstart});
  EXPECT_EQ(r.exit_code, 2);
}

TEST(CliCheck, WarningsAloneExitZero) {
  RunResult r = RunMlpc({"check", kWarningsOnly});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: param `lr` is never used"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("0 errors, 3 warnings"), std::string::npos) << r.err;
}

TEST(CliCheck, WerrorTurnsWarningsIntoFailure) {
  RunResult r = RunMlpc({"check", "--werror", kWarningsOnly});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  RunResult clean = RunMlpc({"check", "--werror", kQuickstart});
  EXPECT_EQ(clean.exit_code, 0) << clean.err;
}

// --- machine-readable diagnostics

TEST(CliCheck, JsonFormatHasCodesAndLocations) {
  RunResult r = RunMlpc({"check", "--format", "json", kFailFile});
  EXPECT_EQ(r.exit_code, 1);
  json doc = ParseJson(r.out);
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["errors"], 1);
  EXPECT_EQ(doc["warnings"], 0);
  ASSERT_EQ(doc["diagnostics"].size(), 1u) << r.out;
  const json& d = doc["diagnostics"][0];
  EXPECT_EQ(d["severity"], "error");
  EXPECT_EQ(d["code"], "unknown-field");
  EXPECT_NE(d["message"].get<std::string>().find("unknown field `epoch`"), std::string::npos);
  EXPECT_EQ(d["location"]["file"], kFailFile);
  EXPECT_EQ(d["location"]["line"], 9);
  EXPECT_EQ(d["location"]["column"], 3);
  EXPECT_EQ(d["location"]["end_line"], 9);
  EXPECT_EQ(d["location"]["end_column"], 8);  // `epoch` is 5 characters
  EXPECT_TRUE(d["notes"].is_array());
}

TEST(CliCheck, JsonFormatOfACleanFileIsEmpty) {
  RunResult r = RunMlpc({"check", "--format", "json", kQuickstart});
  EXPECT_EQ(r.exit_code, 0);
  json doc = ParseJson(r.out);
  EXPECT_EQ(doc["errors"], 0);
  EXPECT_TRUE(doc["diagnostics"].empty());
}

// With several files, `--format json` prints one document for all of them.
TEST(CliCheck, JsonFormatOfSeveralFilesIsOneDocument) {
  RunResult r = RunMlpc({"check", "--format", "json", kQuickstart, kFailFile});
  EXPECT_EQ(r.exit_code, 1);
  json doc = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(doc.is_discarded()) << "not one JSON document:\n" << r.out;
  EXPECT_EQ(doc["errors"], 1);
}

TEST(CliCheck, JsonFormatCarriesNotes) {
  // A dependency cycle has notes pointing at each reference.
  RunResult r = RunMlpc({"check", "--format", "json", "tests/golden/fail_dependency_cycle.mlp"});
  EXPECT_EQ(r.exit_code, 1);
  json doc = ParseJson(r.out);
  ASSERT_FALSE(doc["diagnostics"].empty());
  const json& d = doc["diagnostics"][0];
  EXPECT_EQ(d["code"], "dependency-cycle");
  ASSERT_FALSE(d["notes"].empty()) << r.out;
  EXPECT_TRUE(d["notes"][0]["location"].contains("line"));
}

TEST(CliCheck, SarifFormatHasVersionAndRuleIds) {
  RunResult r = RunMlpc({"check", "--format", "sarif", kFailFile});
  EXPECT_EQ(r.exit_code, 1);
  json doc = ParseJson(r.out);
  EXPECT_EQ(doc["version"], "2.1.0");
  ASSERT_EQ(doc["runs"].size(), 1u);
  const json& run = doc["runs"][0];
  EXPECT_EQ(run["tool"]["driver"]["name"], "mlpc");
  std::set<std::string> rules;
  for (const auto& rule : run["tool"]["driver"]["rules"]) rules.insert(rule["id"].get<std::string>());
  EXPECT_TRUE(rules.count("unknown-field"));
  EXPECT_TRUE(rules.count("unused-kernel"));
  ASSERT_EQ(run["results"].size(), 1u);
  const json& res = run["results"][0];
  EXPECT_EQ(res["ruleId"], "unknown-field");
  EXPECT_EQ(res["level"], "error");
  const json& region = res["locations"][0]["physicalLocation"]["region"];
  EXPECT_EQ(region["startLine"], 9);
  EXPECT_EQ(region["startColumn"], 3);
  EXPECT_EQ(res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], kFailFile);
}

TEST(CliCheck, SarifWarningsHaveWarningLevel) {
  RunResult r = RunMlpc({"check", "--format", "sarif", kWarningsOnly});
  EXPECT_EQ(r.exit_code, 0);
  json doc = ParseJson(r.out);
  const json& results = doc["runs"][0]["results"];
  ASSERT_EQ(results.size(), 3u) << r.out;
  for (const auto& res : results) EXPECT_EQ(res["level"], "warning");
}

// --- mlpc compile

TEST(CliCompile, PlanJsonToStdout) {
  RunResult r = RunMlpc({"compile", kQuickstart});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  json plan = ParseJson(r.out);
  EXPECT_EQ(plan["format"], "mlp.plan.v1");
  EXPECT_EQ(plan["pipeline"], "quickstart");
  EXPECT_EQ(NodeNames(plan), (std::vector<std::string>{"fashion", "classifier", "sweep", "classify", "balance"}));
}

TEST(CliCompile, WarningsGoToStderrAndThePlanToStdout) {
  RunResult r = RunMlpc({"compile", kWarningsOnly});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: kernel `scale` is never used"), std::string::npos) << r.err;
  json plan = ParseJson(r.out);
  EXPECT_EQ(plan["pipeline"], "unused_warnings");
}

TEST(CliCompile, ErrorsExitOneWithoutAPlan) {
  RunResult r = RunMlpc({"compile", kFailFile});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("unknown field `epoch`"), std::string::npos) << r.err;
}

TEST(CliCompile, ErrorsWriteNoOutputFile) {
  TempDir dir;
  std::string out = dir.File("plan.json");
  RunResult r = RunMlpc({"compile", kFailFile, "-o", out});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(fs::exists(out));
}

TEST(CliCompile, OutputJsonFile) {
  TempDir dir;
  std::string out = dir.File("plan.json");
  RunResult r = RunMlpc({"compile", kQuickstart, "-o", out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "") << "with -o the plan goes to the file only";
  ASSERT_TRUE(fs::exists(out));
  json plan = ParseJson(ReadFile(out));
  EXPECT_EQ(plan["pipeline"], "quickstart");
  EXPECT_EQ(plan["nodes"].size(), 5u);
}

TEST(CliCompile, OutputBinaryProtobufFile) {
  TempDir dir;
  std::string pb_path = dir.File("plan.pb");
  RunResult r = RunMlpc({"compile", kQuickstart, "-o", pb_path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(pb_path));
  mlp::plan::v1::Plan plan;
  ASSERT_TRUE(plan.ParseFromString(ReadFile(pb_path))) << "not a binary mlp.plan.v1 Plan";
  EXPECT_EQ(plan.format(), "mlp.plan.v1");
  EXPECT_EQ(plan.pipeline(), "quickstart");

  // The same plan as the JSON output.
  json j = ParseJson(RunMlpc({"compile", kQuickstart}).out);
  std::vector<std::string> names;
  for (const auto& n : plan.nodes()) names.push_back(n.name());
  EXPECT_EQ(names, NodeNames(j));
  ASSERT_GT(plan.nodes_size(), 0);
  EXPECT_FALSE(plan.nodes(0).content_hash().empty());
  EXPECT_EQ(plan.nodes(0).content_hash(), j["nodes"][0]["content_hash"].get<std::string>());
}

// Regression: the plan once listed imported kernels under their bare names
// (`clamp01`) while nodes referred to them by plan name (`m.clamp01`).
TEST(CliCompile, EveryKernelANodeNamesIsInThePlan) {
  RunResult r = RunMlpc({"compile", "tests/golden/plan_imported_kernels.mlp"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json plan = ParseJson(r.out);
  std::set<std::string> kernels;
  for (const auto& k : plan["kernels"]) kernels.insert(k["name"].get<std::string>());
  EXPECT_EQ(kernels.size(), plan["kernels"].size()) << "kernel names in the plan must be unique";
  for (const auto& n : plan["nodes"]) {
    if (!n.contains("kernels")) continue;
    for (const auto& k : n["kernels"]) {
      EXPECT_TRUE(kernels.count(k.get<std::string>()))
          << "node `" << n["name"].get<std::string>() << "` needs kernel `" << k.get<std::string>()
          << "`, which plan.kernels does not list";
    }
  }
}

// Two imported files may each declare a kernel `f`; the plan keeps both apart,
// and a node's content hash covers the source of the aliased kernels it uses.
TEST(CliCompile, AliasedKernelsWithOneNameStayApartAndAreHashed) {
  TempDir dir;
  std::string main_file = dir.File("main.mlp");
  WriteFile(dir.File("a.mlp"), "kernel f(x: f32) -> f32 {\n  x + 1.0\n}\n");
  WriteFile(dir.File("b.mlp"), "kernel f(x: f32) -> f32 {\n  x * 2.0\n}\n");
  WriteFile(main_file,
            "import \"a.mlp\" as a\n"
            "import \"b.mlp\" as b\n"
            "\n"
            "data d {\n"
            "  source    = synthetic(rows: 10, features: 2)\n"
            "  transform = map(a.f) | map(b.f)\n"
            "}\n"
            "\n"
            "train t {\n"
            "  model = mlp(classes: 2)\n"
            "  data  = d.all\n"
            "}\n");
  RunResult r = RunMlpc({"compile", main_file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json plan = ParseJson(r.out);
  std::set<std::string> names;
  for (const auto& k : plan["kernels"]) names.insert(k["name"].get<std::string>());
  EXPECT_EQ(names, (std::set<std::string>{"a.f", "b.f"}));
  ASSERT_EQ(plan["nodes"][0]["name"], "d");
  EXPECT_EQ(plan["nodes"][0]["kernels"], json::array({"a.f", "b.f"}));

  WriteFile(dir.File("b.mlp"), "kernel f(x: f32) -> f32 {\n  x * 3.0\n}\n");
  RunResult changed = RunMlpc({"compile", main_file});
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  json plan2 = ParseJson(changed.out);
  EXPECT_NE(plan["nodes"][0]["content_hash"], plan2["nodes"][0]["content_hash"])
      << "editing an aliased kernel must change the hash of the node that maps it";
  EXPECT_NE(plan["nodes"][1]["content_hash"], plan2["nodes"][1]["content_hash"]) << "and of its dependents";
}

TEST(CliCompile, ImportPathFlag) {
  TempDir dir;
  std::string file = dir.File("uses_lib.mlp");
  WriteFile(file,
            "import \"pixel_kernels.mlp\"\n"
            "\n"
            "data fashion {\n"
            "  source    = synthetic(rows: 100, features: 4)\n"
            "  transform = map(normalize_pixel)\n"
            "}\n"
            "\n"
            "train classifier {\n"
            "  model = mlp(classes: 2)\n"
            "  data  = fashion.all\n"
            "}\n");
  RunResult without = RunMlpc({"check", file});
  EXPECT_EQ(without.exit_code, 1);
  EXPECT_NE(without.err.find("cannot find imported file `pixel_kernels.mlp`"), std::string::npos) << without.err;
  EXPECT_NE(without.err.find("-I DIR"), std::string::npos) << without.err;
  RunResult with = RunMlpc({"check", "-I", "tests/golden/lib", file});
  EXPECT_EQ(with.exit_code, 0) << with.err;
}

TEST(CliCompile, UnwritableOutputIsAUsageError) {
  RunResult r = RunMlpc({"compile", kQuickstart, "-o", "/nonexistent-dir/plan.json"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot write"), std::string::npos) << r.err;
}

TEST(CliCompile, EmitTokens) {
  RunResult r = RunMlpc({"compile", "--emit", "tokens", kQuickstart});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("3:1 PIPELINE 'pipeline'"), std::string::npos) << r.out.substr(0, 400);
  EXPECT_NE(r.out.find("3:10 ID 'quickstart'"), std::string::npos);
  EXPECT_NE(r.out.find("EOF"), std::string::npos);
}

TEST(CliCompile, EmitTokensOfABadFileStillLexes) {
  RunResult r = RunMlpc({"compile", "--emit", "tokens", "tests/golden/fail_invalid_character.mlp"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ERROR_CHAR '@'"), std::string::npos) << r.out;
}

TEST(CliCompile, EmitAst) {
  RunResult r = RunMlpc({"compile", "--emit", "ast", kQuickstart});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  for (const char* name : {"quickstart", "fashion", "classifier", "sweep", "classify", "balance", "scale"}) {
    EXPECT_NE(r.out.find(name), std::string::npos) << "the AST dump misses `" << name << "`";
  }
  // The AST is not a plan.
  EXPECT_EQ(r.out.find("mlp.plan.v1"), std::string::npos);
}

TEST(CliCompile, BadEmitValueIsAUsageError) {
  RunResult r = RunMlpc({"compile", "--emit", "wasm", kQuickstart});
  EXPECT_EQ(r.exit_code, 2);
}

// --- param overrides

TEST(CliParams, DefaultsAppearInThePlan) {
  json plan = ParseJson(RunMlpc({"compile", kQuickstart}).out);
  const json* epochs = Param(plan, "epochs");
  ASSERT_NE(epochs, nullptr) << plan.dump(2);
  EXPECT_EQ(IntOf((*epochs)["int_value"]), 2);
}

TEST(CliParams, SetChangesTheParamAndTheField) {
  RunResult r = RunMlpc({"compile", kQuickstart, "--set", "epochs=7", "--set", "data_dir=/mnt/fm"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json plan = ParseJson(r.out);
  ASSERT_NE(Param(plan, "epochs"), nullptr);
  EXPECT_EQ(IntOf((*Param(plan, "epochs"))["int_value"]), 7);
  EXPECT_EQ((*Param(plan, "data_dir"))["path_value"], "/mnt/fm");
  // The train stage reads `epochs`; the data stage interpolates `data_dir`.
  std::string text = plan.dump();
  EXPECT_NE(text.find("/mnt/fm/train-images-idx3-ubyte.gz"), std::string::npos);
  bool found = false;
  for (const auto& n : plan["nodes"]) {
    if (n["name"] != "classifier") continue;
    for (const auto& a : n["args"]) {
      if (a["name"] == "epochs") {
        EXPECT_EQ(IntOf(a["value"]["int_value"]), 7);
        found = true;
      }
    }
  }
  EXPECT_TRUE(found) << "classifier has no `epochs` arg";
}

TEST(CliParams, OverrideChangesTheContentHash) {
  json a = ParseJson(RunMlpc({"compile", kQuickstart}).out);
  json b = ParseJson(RunMlpc({"compile", kQuickstart, "--set", "epochs=3"}).out);
  ASSERT_EQ(a["nodes"].size(), b["nodes"].size());
  // fashion does not depend on `epochs`; classifier does, and so do its dependents.
  EXPECT_EQ(a["nodes"][0]["content_hash"], b["nodes"][0]["content_hash"]);
  EXPECT_NE(a["nodes"][1]["content_hash"], b["nodes"][1]["content_hash"]);
  EXPECT_NE(a["nodes"][2]["content_hash"], b["nodes"][2]["content_hash"]) << "a dependent's hash covers its inputs";
}

TEST(CliParams, ParamsFile) {
  TempDir dir;
  std::string params = dir.File("params.json");
  WriteFile(params, R"({"epochs": 9, "data_dir": "/srv/fm"})");
  RunResult r = RunMlpc({"compile", kQuickstart, "--params", params});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json plan = ParseJson(r.out);
  EXPECT_EQ(IntOf((*Param(plan, "epochs"))["int_value"]), 9);
  EXPECT_EQ((*Param(plan, "data_dir"))["path_value"], "/srv/fm");
}

TEST(CliParams, SetWinsOverParamsFile) {
  TempDir dir;
  std::string params = dir.File("params.json");
  WriteFile(params, R"({"epochs": 9})");
  RunResult r = RunMlpc({"compile", kQuickstart, "--params", params, "--set", "epochs=4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(IntOf((*Param(ParseJson(r.out), "epochs"))["int_value"]), 4);
}

TEST(CliParams, BadSetValueNamesTheParam) {
  RunResult r = RunMlpc({"check", kQuickstart, "--set", "epochs=abc"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("invalid value for param `epochs` in `--set epochs=abc`: `abc` is not an int"),
            std::string::npos)
      << r.err;
}

TEST(CliParams, UnknownSetNameSuggestsTheParam) {
  RunResult r = RunMlpc({"check", kQuickstart, "--set", "epoch=3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown param `epoch`"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did you mean `epochs`?"), std::string::npos) << r.err;
}

TEST(CliParams, BadParamsFileValueNamesTheParam) {
  TempDir dir;
  std::string params = dir.File("params.json");
  WriteFile(params, R"({"epochs": "many"})");
  RunResult r = RunMlpc({"check", kQuickstart, "--params", params});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("param `epochs`"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("params file"), std::string::npos) << r.err;
}

TEST(CliParams, ParamsFileOfTheWrongShapeIsAUsageError) {
  TempDir dir;
  std::string params = dir.File("params.json");
  WriteFile(params, "[1, 2]");
  RunResult r = RunMlpc({"check", kQuickstart, "--params", params});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("must hold a JSON object"), std::string::npos) << r.err;
  WriteFile(params, "{\"epochs\": ");
  r = RunMlpc({"check", kQuickstart, "--params", params});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not valid JSON"), std::string::npos) << r.err;
  r = RunMlpc({"check", kQuickstart, "--params", dir.File("missing.json")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot read params file"), std::string::npos) << r.err;
}

// --- mlpc graph

TEST(CliGraph, Dot) {
  RunResult r = RunMlpc({"graph", kQuickstart});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("digraph \"quickstart\" {", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\"fashion\" -> \"classifier\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"classifier\" -> \"sweep\""), std::string::npos) << r.out;
  RunResult explicit_dot = RunMlpc({"graph", "--format", "dot", kQuickstart});
  EXPECT_EQ(explicit_dot.out, r.out);
}

TEST(CliGraph, Mermaid) {
  RunResult r = RunMlpc({"graph", "--format", "mermaid", kQuickstart});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("flowchart"), std::string::npos) << r.out;
  for (const char* name : {"fashion", "classifier", "sweep", "classify", "balance"}) {
    EXPECT_NE(r.out.find(name), std::string::npos) << name;
  }
}

TEST(CliGraph, Json) {
  RunResult r = RunMlpc({"graph", "--format", "json", kQuickstart});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json g = ParseJson(r.out);
  EXPECT_FALSE(g.is_discarded());
  EXPECT_NE(r.out.find("classifier"), std::string::npos);
}

TEST(CliGraph, ErrorsExitOne) {
  RunResult r = RunMlpc({"graph", kFailFile});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("unknown field"), std::string::npos);
}

// --- mlpc fmt

TEST(CliFmt, CheckThenWrite) {
  TempDir dir;
  std::string file = dir.File("messy.mlp");
  WriteFile(file,
            "data   fashion{\n"
            "source=synthetic(rows:100,features:4)\n"
            "    }\n"
            "train classifier {model=mlp(classes:2)\n"
            "data=fashion.all}\n");
  RunResult check = RunMlpc({"fmt", "--check", file});
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.out.find(file), std::string::npos) << "--check lists the file:\n" << check.out;

  std::string before = ReadFile(file);
  RunResult write = RunMlpc({"fmt", "--write", file});
  EXPECT_EQ(write.exit_code, 0) << write.err;
  EXPECT_NE(ReadFile(file), before);

  RunResult again = RunMlpc({"fmt", "--check", file});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(again.out, "");
  // The formatted file still checks the same way.
  EXPECT_EQ(RunMlpc({"check", file}).exit_code, 0);
}

TEST(CliFmt, PrintsToStdoutWithoutFlags) {
  TempDir dir;
  std::string file = dir.File("messy.mlp");
  WriteFile(file, "data   fashion{\nsource=synthetic(rows:100,features:4)}\n");
  RunResult r = RunMlpc({"fmt", file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("data fashion {"), std::string::npos) << r.out;
  EXPECT_EQ(ReadFile(file), "data   fashion{\nsource=synthetic(rows:100,features:4)}\n") << "fmt without --write must not write";
}

// The shipped quickstart is in canonical form.
TEST(CliFmt, QuickstartIsCanonical) {
  RunResult r = RunMlpc({"fmt", "--check", kQuickstart});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST(CliFmt, SyntaxErrorsAreNotFormatted) {
  RunResult r = RunMlpc({"fmt", "--check", "tests/golden/fail_syntax_error.mlp"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not formatted: it has syntax errors"), std::string::npos) << r.err;
}

TEST(CliFmt, CheckAndWriteExcludeEachOther) {
  RunResult r = RunMlpc({"fmt", "--check", "--write", kQuickstart});
  EXPECT_EQ(r.exit_code, 2);
}

// --- version and help

TEST(CliMisc, Version) {
  RunResult r = RunMlpc({"version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("mlpc ", 0), 0u) << r.out;
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_EQ(r.err, "");
}

TEST(CliMisc, HelpForASubcommand) {
  RunResult r = RunMlpc({"help", "check"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--werror"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--format"), std::string::npos) << r.out;
}

// Regression: `mlpc help` with no topic once printed the help of the `help`
// subcommand itself.
TEST(CliMisc, HelpListsSubcommands) {
  RunResult r = RunMlpc({"help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"check", "compile", "graph", "fmt", "version"}) {
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
  }
}

TEST(CliMisc, HelpForAnUnknownSubcommandIsAUsageError) {
  RunResult r = RunMlpc({"help", "nosuch"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no subcommand `nosuch`"), std::string::npos) << r.err;
}

// `--emit llvm` prints each kernel's IR as lowered (before optimisation, so
// it does not depend on the CPU): a golden file; `llvm-opt` is optimised for
// this machine, so only its shape is checked.
TEST(CliCompile, EmitLlvmPrintsEachKernelsIR) {
  const std::string golden = "tests/golden/llvm/imported_kernels.ll";
  RunResult r = RunMlpc({"compile", "--emit", "llvm", "tests/golden/plan_imported_kernels.mlp"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  if (std::getenv("MLP_UPDATE_GOLDEN")) WriteFile(golden, r.out);
  EXPECT_EQ(r.out, ReadFile(golden)) << "golden mismatch; if intended, run with MLP_UPDATE_GOLDEN=1";
  RunResult o = RunMlpc({"compile", "--emit", "llvm-opt", "tests/golden/plan_imported_kernels.mlp"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("target triple"), std::string::npos);
  EXPECT_NE(o.out.find("define i32 @mlp_map("), std::string::npos);
  RunResult bad = RunMlpc({"compile", "--emit", "llvm", kFailFile});
  EXPECT_EQ(bad.exit_code, 1);  // compile errors, as for --emit plan
}

}  // namespace
}  // namespace mlp::testing
