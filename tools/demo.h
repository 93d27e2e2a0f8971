// `shmports demo`: a narrated walk through what the library does, with a
// real child process (this binary again, as `shmports demo-child`).
#ifndef SHMPORTS_TOOLS_DEMO_H_
#define SHMPORTS_TOOLS_DEMO_H_

namespace shmports::tools {

// Runs the demo and prints each step (prose, or one JSON document with
// `json`). Returns the process exit code: non-zero if any step failed.
int RunDemo(bool json);

// The child side: accepts the invitation and echoes until the parent goes.
int RunDemoChild();

}  // namespace shmports::tools

#endif  // SHMPORTS_TOOLS_DEMO_H_
