"""The engine: how a fit is evaluated, apart from what it computes.

Everything here is about speed and about the machine, never about the statistics, and every use of a JAX
internal lives in :mod:`.compat` with a fallback to the plain JAX path that gives the same answers:

* :mod:`.plan` decides, once per problem and data shapes, how a fit is evaluated (derivative mode, row
  blocks, device layout, compile options, the default method's override) and returns a plain value;
* :mod:`.rows` proves from the traced program that observations depend on their own rows only, and cuts
  row blocks; :mod:`.rewrite` rewrites traced programs without changing what they compute;
* :mod:`.devices` lays an eager fit's rows out over CPU devices (and :func:`.devices.use_cpu_devices`, the
  explicit opt-in for one CPU device per core); :mod:`.compile` holds the compile options;
* :mod:`.linalg` is the small dense linear algebra of the solver and the information matrix (LAPACK-free for
  small matrices, LAPACK one matrix at a time otherwise);
* :mod:`.cache` is the persistent compilation cache, used only where the user asks for it.
"""
