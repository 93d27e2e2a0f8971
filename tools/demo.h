// `shmports demo`: a narrated walk through what the library can do.
#ifndef SHMPORTS_TOOLS_DEMO_H_
#define SHMPORTS_TOOLS_DEMO_H_

namespace shmports::tools {

// Runs the demo and prints each step (prose, or one JSON document with
// `json`). Returns the process exit code.
int RunDemo(bool json);

}  // namespace shmports::tools

#endif  // SHMPORTS_TOOLS_DEMO_H_
