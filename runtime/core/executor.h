// An executor process: runs one task (or hosts one actor) at a time for its
// worker agent, so that a task that crashes (segfault, abort, out of memory)
// takes down only this process. The agent starts it as `mlpc __executor FD`
// and talks to it over a unix socket pair (ExecRequest / ExecReply).
#pragma once

namespace mlp::rt {

// Serves requests on `fd` until the agent closes it. Returns the exit status.
int RunExecutor(int fd);

}  // namespace mlp::rt
