// mlpc: the command-line driver. Thin: it parses flags, calls one front-end
// phase after another, and prints. Exit codes of the compiler's commands: 0
// ok, 1 errors in the input (or a `fmt --check` diff), 2 usage errors and
// unreadable inputs. The runtime's commands (runtime_cmds.h) add 3 (compile
// errors), 5 (cluster unreachable) and 130 (interrupted).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "compiler/base/diagnostic_render.h"
#include "compiler/driver/compile.h"
#include "compiler/format/formatter.h"
#include "compiler/parse/ast_dump.h"
#include "compiler/parse/parser.h"
#include "compiler/plan/graph_render.h"
#include "compiler/plan/lower.h"
#include "runtime/core/executor.h"
#include "runtime/jit/jit.h"
#include "runtime/ops/readers.h"
#include "runtime/ops/registry.h"
#include "runtime/train/train_op.h"
#include "runtime_cmds.h"

#ifdef MLP_WITH_MIMALLOC
#include <mimalloc.h>
#endif

#ifndef MLP_VERSION
#define MLP_VERSION "0.0.0"
#endif

namespace {

constexpr int kExitOk = 0;
namespace fs = std::filesystem;
constexpr int kExitErrors = 1;
constexpr int kExitUsage = 2;

struct CommonFlags {
  std::vector<std::string> sets;
  std::string params_file;
  std::vector<std::string> import_paths;
  std::string color = "auto";
};

void AddCommon(CLI::App* app, CommonFlags& f) {
  app->add_option("--set", f.sets, "override a param: --set NAME=VALUE (repeatable)")->type_name("NAME=VALUE");
  app->add_option("--params", f.params_file, "JSON file of param values: {\"epochs\": 5}")->type_name("FILE");
  app->add_option("-I,--import-path", f.import_paths, "directory searched for imports")->type_name("DIR");
  app->add_option("--color", f.color, "colored diagnostics")->check(CLI::IsMember({"auto", "always", "never"}));
}

[[noreturn]] void Usage(const std::string& msg) {
  std::fprintf(stderr, "mlpc: error: %s\n", msg.c_str());
  std::exit(kExitUsage);
}

bool UseColor(const std::string& mode) {
  if (mode == "always") return true;
  if (mode == "never") return false;
  const char* term = std::getenv("TERM");
  return isatty(STDERR_FILENO) && !std::getenv("NO_COLOR") && term && std::string(term) != "dumb";
}

mlp::Value JsonToValue(const nlohmann::json& j, const std::string& key) {
  mlp::Value v;
  if (j.is_boolean()) {
    v.tag = mlp::Value::Tag::Bool;
    v.b = j.get<bool>();
  } else if (j.is_number_integer()) {
    v = mlp::Value::Int(j.get<int64_t>());
  } else if (j.is_number()) {
    v = mlp::Value::Float(j.get<double>());
  } else if (j.is_string()) {
    v.tag = mlp::Value::Tag::String;
    v.s = j.get<std::string>();
  } else if (j.is_array()) {
    v.tag = mlp::Value::Tag::List;
    for (const auto& item : j) v.items.push_back(JsonToValue(item, key));
  } else {
    v.tag = mlp::Value::Tag::Map;  // not a param type: reported as a mismatch
  }
  return v;
}

mlp::CheckOptions MakeCheckOptions(const CommonFlags& f) {
  mlp::CheckOptions opts;
  if (!f.params_file.empty()) {
    std::string error;
    auto text = mlp::ReadSourceFile(f.params_file, 16 << 20, &error);
    if (!text) Usage("cannot read params file `" + f.params_file + "`: " + error);
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(*text);
    } catch (const nlohmann::json::parse_error& e) {
      Usage("params file `" + f.params_file + "` is not valid JSON at byte " + std::to_string(e.byte));
    }
    if (!doc.is_object()) Usage("params file `" + f.params_file + "` must hold a JSON object: {\"name\": value}");
    for (const auto& [k, v] : doc.items()) {
      mlp::ParamOverride o;
      o.name = k;
      o.value = JsonToValue(v, k);
      o.origin = "params file `" + f.params_file + "`";
      opts.overrides.push_back(std::move(o));
    }
  }
  for (const auto& s : f.sets) {  // --set wins over the params file: it comes later
    size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0) Usage("`--set " + s + "` must have the form NAME=VALUE");
    std::string name = s.substr(0, eq);
    std::erase_if(opts.overrides, [&](const mlp::ParamOverride& o) { return o.name == name; });
    mlp::ParamOverride o;
    o.name = name;
    o.text = s.substr(eq + 1);
    o.origin = "`--set " + s + "`";
    opts.overrides.push_back(std::move(o));
  }
  return opts;
}

mlp::LoadOptions MakeLoadOptions(const CommonFlags& f) {
  mlp::LoadOptions opts;
  opts.import_paths = f.import_paths;
  return opts;
}

std::string ReadInput(const std::string& path) {
  std::string error;
  auto text = mlp::ReadSourceFile(path, 64 << 20, &error);
  if (!text) Usage("cannot read `" + path + "`: " + error);
  return *text;
}

mlp::Compilation CompileFile(const std::string& path, const CommonFlags& f) {
  return mlp::CompileSource(path, ReadInput(path), MakeLoadOptions(f), MakeCheckOptions(f));
}

bool WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  return static_cast<bool>(out);
}

int CmdCheck(const std::vector<std::string>& files, const CommonFlags& f, const std::string& format, bool werror) {
  bool failed = false;
  std::vector<mlp::Compilation> kept;  // JSON and SARIF describe every file in one document
  for (const auto& file : files) {
    auto c = CompileFile(file, f);
    if (format != "text") {
      failed |= c.diags.has_errors() || (werror && c.diags.warning_count() > 0);
      kept.push_back(std::move(c));
      continue;
    }
    std::cerr << mlp::RenderText(c.program->sm, c.diags, UseColor(f.color));
    if (c.diags.error_count() || c.diags.warning_count()) {
      auto plural = [](size_t n, const char* w) { return std::to_string(n) + " " + w + (n == 1 ? "" : "s"); };
      std::cerr << file << ": " << plural(c.diags.error_count(), "error") << ", "
                << plural(c.diags.warning_count(), "warning") << "\n";
    }
    failed |= c.diags.has_errors() || (werror && c.diags.warning_count() > 0);
    // Like clang's -disable-free: the process exits soon, so skip tearing down
    // the AST and checked pipeline of a large file.
    (void)c.program.release();
    (void)c.checked.release();
  }
  if (format != "text") {
    std::vector<mlp::DiagSource> sources;
    for (const auto& c : kept) sources.push_back({&c.program->sm, &c.diags});
    std::cout << (format == "json" ? mlp::RenderJson(sources) : mlp::RenderSarif(sources, MLP_VERSION));
  }
  return failed ? kExitErrors : kExitOk;
}

int CmdCompile(const std::string& file, const CommonFlags& f, const std::string& emit, const std::string& out_path) {
  std::string text = ReadInput(file);
  std::string output;
  if (emit == "tokens") {
    mlp::SourceManager sm;
    output = mlp::DumpTokens(sm, sm.Add(file, text));
  } else {
    auto c = mlp::CompileSource(file, text, MakeLoadOptions(f), MakeCheckOptions(f));
    std::cerr << mlp::RenderText(c.program->sm, c.diags, UseColor(f.color));
    if (emit == "ast") {
      if (c.program->modules.empty()) return kExitErrors;
      output = mlp::DumpAst(c.program->sm, *c.program->modules[0].ast, true);
      if (!output.empty() && output.back() != '\n') output += '\n';
    } else {
      if (c.diags.has_errors() || !c.checked) return kExitErrors;
      auto plan = mlp::LowerPlan(*c.program, *c.checked);
      if (emit == "llvm" || emit == "llvm-opt") {
        std::string error;
        if (!mlp::rt::jit::EmitPlanIR(plan, emit == "llvm-opt", &output, &error)) {
          std::cerr << file << ": " << error << "\n";
          return kExitErrors;
        }
      } else if (out_path.size() > 3 && out_path.ends_with(".pb")) {
        std::string bytes;
        plan.SerializeToString(&bytes);
        output = std::move(bytes);
      } else {
        output = mlp::PlanToJson(plan) + "\n";
      }
    }
    if (c.diags.has_errors() && emit != "ast") return kExitErrors;
  }
  if (out_path.empty() || out_path == "-") {
    std::cout << output;
  } else if (!WriteFile(out_path, output)) {
    Usage("cannot write `" + out_path + "`");
  }
  return kExitOk;
}

int CmdGraph(const std::string& file, const CommonFlags& f, const std::string& format) {
  auto c = CompileFile(file, f);
  std::cerr << mlp::RenderText(c.program->sm, c.diags, UseColor(f.color));
  if (c.diags.has_errors() || !c.checked) return kExitErrors;
  auto plan = mlp::LowerPlan(*c.program, *c.checked);
  if (format == "dot") std::cout << mlp::GraphDot(plan);
  if (format == "mermaid") std::cout << mlp::GraphMermaid(plan);
  if (format == "json") std::cout << mlp::GraphJson(plan);
  return kExitOk;
}

int CmdFmt(const std::vector<std::string>& files, bool check, bool write, const std::string& color) {
  bool failed = false;
  bool differs = false;
  if (files.size() > 1 && !check && !write) Usage("`mlpc fmt` with several files needs --write or --check");
  for (const auto& file : files) {
    std::string text = ReadInput(file);
    mlp::SourceManager sm;
    mlp::Diagnostics diags;
    mlp::FileId id = sm.Add(file, text);
    auto ast = mlp::Parse(sm, id, diags);
    if (diags.has_errors()) {
      std::cerr << mlp::RenderText(sm, diags, UseColor(color));
      std::cerr << file << ": not formatted: it has syntax errors\n";
      failed = true;
      continue;
    }
    std::string formatted = mlp::Format(sm, *ast);
    if (check) {
      if (formatted != text) {
        std::cout << file << "\n";
        differs = true;
      }
    } else if (write) {
      if (formatted != text && !WriteFile(file, formatted)) Usage("cannot write `" + file + "`");
    } else {
      std::cout << formatted;
    }
  }
  return failed || differs ? kExitErrors : kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // The train stage op (torch itself is loaded only when a train task runs).
  mlp::rt::train::Register(mlp::rt::ops::Global());
  // An executor process started by a worker agent: no flag parsing, no mimalloc options.
  if (argc == 3 && std::string_view(argv[1]) == "__executor") {
    mlp::rt::jit::Install();  // kernels get the native tier (MLPC_JIT: auto, on or off)
    return mlp::rt::RunExecutor(std::atoi(argv[2]));
  }
#ifdef MLP_WITH_MIMALLOC
  // Huge pages where the kernel offers them: a large pipeline's AST then costs
  // a few page faults instead of tens of thousands.
  if (!std::getenv("MIMALLOC_LARGE_OS_PAGES")) mi_option_enable(mi_option_large_os_pages);
#endif
  CLI::App app{"mlpc: declare, check, compile and run machine-learning pipelines", "mlpc"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("mlpc ") + MLP_VERSION);
  app.fallthrough(false);

  CommonFlags common;
  std::vector<std::string> files;
  std::string file, format = "text", emit = "plan", out_path, graph_format = "dot";
  bool werror = false, fmt_check = false, fmt_write = false;

  auto* check = app.add_subcommand("check", "check .mlp files; exit 0 clean, 1 errors, 2 usage");
  check->add_option("files", files, "pipeline files")->required()->type_name("FILE");
  check->add_option("--format", format, "diagnostics format")->check(CLI::IsMember({"text", "json", "sarif"}));
  check->add_flag("--werror", werror, "treat warnings as errors");
  AddCommon(check, common);

  auto* compile = app.add_subcommand("compile", "compile a pipeline to its plan (mlp.plan.v1)");
  compile->add_option("file", file, "pipeline file")->required()->type_name("FILE");
  compile->add_option("-o,--output", out_path, "output file; `.pb` writes binary protobuf, else JSON")->type_name("FILE");
  compile->add_option("--emit", emit,
                      "what to print: tokens, ast, plan (default), llvm (each kernel's IR as lowered), "
                      "llvm-opt (optimised for this machine's CPU)")
      ->check(CLI::IsMember({"tokens", "ast", "plan", "llvm", "llvm-opt"}));
  AddCommon(compile, common);

  auto* graph = app.add_subcommand("graph", "draw a pipeline's task DAG");
  graph->add_option("file", file, "pipeline file")->required()->type_name("FILE");
  graph->add_option("--format", graph_format, "drawing format")->check(CLI::IsMember({"dot", "mermaid", "json"}));
  AddCommon(graph, common);

  auto* fmt = app.add_subcommand("fmt", "format .mlp files canonically");
  fmt->add_option("files", files, "pipeline files")->required()->type_name("FILE");
  fmt->add_flag("--check", fmt_check, "exit 1 and list the files that are not formatted");
  fmt->add_flag("-w,--write", fmt_write, "rewrite the files in place");
  fmt->add_option("--color", common.color, "colored diagnostics")->check(CLI::IsMember({"auto", "always", "never"}));

  mlpc::RuntimeFlags rt_flags;
  auto rt_cmds = mlpc::AddRuntimeCommands(app, rt_flags, [&](CLI::App* sub) { AddCommon(sub, common); });

  auto* version = app.add_subcommand("version", "print the version");
  std::string help_topic;
  auto* help = app.add_subcommand("help", "help for a subcommand");
  help->add_option("command", help_topic, "subcommand");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "mlpc: error: %s\nRun `mlpc help` for usage.\n", e.what());
    return kExitUsage;
  }

  auto compile_plan = [&](const std::string& path, std::string* plan_bytes, std::string* text) {
    *text = ReadInput(path);
    auto c = mlp::CompileSource(path, *text, MakeLoadOptions(common), MakeCheckOptions(common));
    std::cerr << mlp::RenderText(c.program->sm, c.diags, UseColor(common.color));
    if (c.diags.has_errors() || !c.checked) return mlpc::kExitCompile;
    auto plan = mlp::LowerPlan(*c.program, *c.checked);
    // Data files are found from the pipeline's directory wherever the executors run, and
    // their identity is part of the cache key.
    plan.set_source_file(fs::absolute(plan.source_file()).lexically_normal().string());
    mlp::rt::ops::FingerprintInputFiles(&plan);
    plan.SerializeToString(plan_bytes);
    return 0;
  };
  if (int rc = mlpc::RunRuntimeCommand(rt_cmds, rt_flags, compile_plan); rc >= 0) return rc;
  if (*check) return CmdCheck(files, common, format, werror);
  if (*compile) return CmdCompile(file, common, emit, out_path);
  if (*graph) return CmdGraph(file, common, graph_format);
  if (*fmt) {
    if (fmt_check && fmt_write) Usage("--check and --write exclude each other");
    return CmdFmt(files, fmt_check, fmt_write, common.color);
  }
  if (*version) {
    std::printf("mlpc %s\n", MLP_VERSION);
    return kExitOk;
  }
  if (*help) {
    if (help_topic.empty()) {
      // app.help() would describe the parsed subcommand (`help` itself).
      std::cout << app.get_formatter()->make_help(&app, "mlpc", CLI::AppFormatMode::Normal);
      return kExitOk;
    }
    for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      if (sub->get_name() == help_topic) {
        std::cout << sub->help();
        return kExitOk;
      }
    }
    Usage("no subcommand `" + help_topic + "`; run `mlpc help`");
  }
  return kExitUsage;
}
