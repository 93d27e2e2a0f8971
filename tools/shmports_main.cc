// The shmports command line: one binary, one subcommand per job, each with
// --help and --json.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "tools/demo.h"

int main(int argc, char** argv) {
  CLI::App app{
      "shmports: Mojo-style ports between processes over shared memory"};
  app.require_subcommand(1);

  bool json = false;
  CLI::App* demo = app.add_subcommand(
      "demo", "Show what the library does, step by step, with explanations");
  demo->add_flag("--json", json, "Print the steps as JSON instead of prose");

  // Hidden: the child the demo launches (this binary again).
  CLI::App* demo_child =
      app.add_subcommand("demo-child", "The demo's child process");
  demo_child->group("");

  CLI11_PARSE(app, argc, argv);

  if (demo_child->parsed())
    return shmports::tools::RunDemoChild();
  if (demo->parsed())
    return shmports::tools::RunDemo(json);
  return 0;
}
