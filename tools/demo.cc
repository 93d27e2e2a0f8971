#include "tools/demo.h"

#include <shmports/invitation.h>
#include <shmports/pipe.h>
#include <shmports/process.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/base/deadline.h"
#include "core/base/str_format.h"

namespace shmports::tools {
namespace {

constexpr auto kWait = std::chrono::seconds(10);
constexpr char kPipeName[] = "demo";

struct Step {
  std::string title;
  std::string detail;
  bool ok = true;
};

class Narrator {
 public:
  void Add(std::string title, std::string detail, bool ok = true) {
    steps_.push_back({std::move(title), std::move(detail), ok});
  }
  // Records a failed step and returns false, for `return narrator.Fail(..)`.
  bool Fail(std::string title, const Status& status) {
    Add(std::move(title), "FAILED: " + status.ToString(), false);
    return false;
  }
  const std::vector<Step>& steps() const { return steps_; }

 private:
  std::vector<Step> steps_;
};

std::string Micros(uint64_t nanos) {
  if (nanos >= 1000000)
    return StrFormat("%.2f ms", static_cast<double>(nanos) / 1e6);
  return StrFormat("%.1f us", static_cast<double>(nanos) / 1e3);
}

std::string SelfPath() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0)
    return "";
  return std::string(buf, static_cast<size_t>(n));
}

// Returns whether every step showed what it should.
bool RunSteps(Narrator& n) {
  auto process = Process::Create();
  if (!process.ok())
    return n.Fail("process", process.status());
  n.Add("process", "this program joins shmports as node " +
                       (*process)->GetStats()->node_name.substr(0, 8) + "…");

  OutgoingInvitation invitation(**process);
  auto pipe = invitation.AttachPipe(kPipeName);
  if (!pipe.ok())
    return n.Fail("pipe created", pipe.status());
  n.Add("pipe created",
        StrFormat("a pipe named \"%s\": we keep one end, the other goes to "
                  "the child",
                  kPipeName));

  uint64_t t0 = MonotonicNanos();
  auto child = invitation.Launch({SelfPath(), "demo-child"});
  if (!child.ok())
    return n.Fail("child launched", child.status());
  n.Add("child launched",
        StrFormat("pid %d (clone3, pidfd held); handshake with kernel "
                  "identity and shared-memory rings done in %s",
                  child->pid(), Micros(MonotonicNanos() - t0).c_str()));

  t0 = MonotonicNanos();
  Status sent = pipe->Send("hello, child");
  auto reply = pipe->Receive(kWait);
  if (!sent.ok() || !reply.ok())
    return n.Fail("messages", sent.ok() ? reply.status() : sent);
  n.Add("messages",
        "sent \"hello, child\"; the child answered \"" +
            std::string(reply->text()) + "\" (round trip " +
            Micros(MonotonicNanos() - t0) + ")",
        reply->text() == "child echoes: hello, child");

  auto pair = (*process)->CreatePipe();
  if (!pair.ok())
    return n.Fail("pipe inside a message", pair.status());
  std::vector<Pipe> attach;
  attach.push_back(std::move(pair->second));
  sent = pipe->Send("here is a pipe", std::move(attach));
  auto through = pair->first.Receive(kWait);
  if (!sent.ok() || !through.ok())
    return n.Fail("pipe inside a message", sent.ok() ? through.status() : sent);
  (void)pipe->Receive(kWait);  // The echo of "here is a pipe".
  n.Add("pipe inside a message",
        "sent a new pipe's end to the child; it wrote back through it: \"" +
            std::string(through->text()) + "\"",
        through->text() == "hello through the pipe you sent");

  auto stats = (*process)->GetStats();
  if (stats.ok()) {
    n.Add("through the rings",
          StrFormat("%llu messages (%llu bytes) out, %llu (%llu bytes) in",
                    static_cast<unsigned long long>(stats->messages_sent),
                    static_cast<unsigned long long>(stats->bytes_sent),
                    static_cast<unsigned long long>(stats->messages_received),
                    static_cast<unsigned long long>(stats->bytes_received)));
  }

  t0 = MonotonicNanos();
  Status killed = child->Kill(SIGKILL);
  if (!killed.ok())
    return n.Fail("child killed", killed);
  auto end = pipe->Receive(kWait, WaitMode::kBlocking);
  uint64_t detect = MonotonicNanos() - t0;
  auto status = pipe->GetStatus();
  bool closed = end.status().code() == StatusCode::kPeerClosed && status.ok() &&
                status->peer_closed;
  n.Add("child killed", StrFormat("SIGKILL sent to pid %d", child->pid()));
  n.Add("peer_closed",
        closed ? "seen " + Micros(detect) +
                     " after the kill (pidfd readable -> ring drained -> "
                     "route closed)"
               : "NOT seen: " + end.status().ToString(),
        closed);
  auto wait = child->Wait(kWait);
  bool signalled =
      wait.ok() && WIFSIGNALED(*wait) && WTERMSIG(*wait) == SIGKILL;
  n.Add(
      "child reaped",
      signalled ? "killed by signal 9, as expected" : "unexpected exit status",
      signalled);

  OutgoingInvitation missing(**process);
  auto error = missing.Launch({"/nonexistent/shmports-child"});
  n.Add("errors carry context",
        error.ok() ? "launching a missing program succeeded?!"
                   : error.status().ToString(),
        !error.ok() && error.status().code() == StatusCode::kNotFound);
  return true;
}

}  // namespace

int RunDemoChild() {
  auto invitation = AcceptInvitation();
  if (!invitation.ok()) {
    std::fprintf(stderr, "demo child: %s\n",
                 invitation.status().ToString().c_str());
    return 1;
  }
  auto pipe = invitation->ExtractPipe(kPipeName);
  if (!pipe.ok())
    return 1;
  for (;;) {
    auto m = pipe->Receive(std::chrono::seconds(60));
    if (!m.ok())
      return m.status().code() == StatusCode::kPeerClosed ? 0 : 1;
    for (Pipe& attached : m->pipes)
      (void)attached.Send("hello through the pipe you sent");
    (void)pipe->Send("child echoes: " + std::string(m->text()));
  }
}

int RunDemo(bool json) {
  Narrator narrator;
  bool ok = RunSteps(narrator);
  for (const Step& step : narrator.steps())
    ok = ok && step.ok;

  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Step& step : narrator.steps()) {
      out.push_back(
          {{"step", step.title}, {"detail", step.detail}, {"ok", step.ok}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return ok ? 0 : 1;
  }
  std::printf("shmports demo: a parent and a real child process\n");
  for (size_t i = 0; i < narrator.steps().size(); ++i) {
    const Step& step = narrator.steps()[i];
    std::printf("  %2zu. %-22s %s%s\n", i + 1, step.title.c_str(),
                step.ok ? "" : "[FAILED] ", step.detail.c_str());
  }
  if (!ok)
    std::printf("demo: a step did not show what it should\n");
  return ok ? 0 : 1;
}

}  // namespace shmports::tools
