"""containerd shim v2 for pyrunc (runtime type io.containerd.pyrunc.v1).

The command `containerd-shim-pyrunc-v1` is one long-lived process per
container, or per pod when containerd groups a pod's containers: it runs
create, start, exec, kill and delete in-process through runtime's library
(the same functions the pyrunc CLI calls), so an interpreter starts once
per container instead of once per verb.

Rooms, each with its contract in its docstring:

* messages - the protobuf messages of the shim API, containerd's events and
  the cgroup metrics, described as field tables and built at start-up into
  a private descriptor pool (wire facts only; no .proto file is used);
* ttrpc    - ttrpc's framing, a server connection and a small client;
* loop     - the single-threaded event loop: fds, signals, timers;
* stdio    - a process's stdin/stdout/stderr as containerd hands them over
  (fifos, files, a pty through the console);
* service  - the Task service: containers, processes, their states, events;
* main     - the command line: `start`, `delete` and serving.
"""
