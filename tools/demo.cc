#include "tools/demo.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "core/base/random.h"
#include "core/base/status.h"
#include "core/base/str_format.h"

namespace shmports::tools {
namespace {

struct Step {
  std::string title;
  std::string detail;
};

std::string NameText(Random128 r) {
  return StrFormat("%016llX.%016llX", static_cast<unsigned long long>(r.v1),
                   static_cast<unsigned long long>(r.v2));
}

}  // namespace

int RunDemo(bool json) {
  std::vector<Step> steps;
  Random128 node = RandomName128();
  Random128 port = RandomName128();
  steps.push_back({"node name", "128-bit CSPRNG name: " + NameText(node)});
  steps.push_back({"port name", "128-bit CSPRNG name: " + NameText(port)});

  Status s = CorruptError("frame length 70000 exceeds the largest frame 65536");
  s.AddContext("drain ring from node " + NameText(node).substr(0, 8));
  steps.push_back({"error with context", s.ToString()});

  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Step& step : steps) {
      out.push_back({{"step", step.title}, {"detail", step.detail}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("shmports demo\n");
  for (size_t i = 0; i < steps.size(); ++i) {
    std::printf("  %zu. %-20s %s\n", i + 1, steps[i].title.c_str(),
                steps[i].detail.c_str());
  }
  return 0;
}

}  // namespace shmports::tools
