"""Training past one process, on JAX's own distributed runtime (multi-controller JAX).

Every process runs the same script: it calls :func:`initialize` first (before any JAX
computation), builds the same :func:`global_mesh` over the devices of all processes, and calls
:func:`train` with the same arguments; XLA then runs one program over all the devices, with the
all-reduces of the data-parallel gradient going between processes (on the CPU through Gloo over
TCP, on GPUs through NCCL). With one process the same code runs unchanged: :func:`initialize`
does nothing and the mesh holds the local devices only.

Data: either every process passes the whole data set (the same arrays everywhere; JAX checks
that they are equal and keeps on each process only the rows of its own devices), or each
process loads only its own rows, ``x[local_rows(n)]``, and makes a global array of them with
:func:`global_array`. The run is the same either way, and equal to a one-process run on the
same data up to the order of the floating-point sums of the all-reduce (float64, measured
on two processes: below 5e-16 relative in the losses, 2.1e-15 in the parameters).

>>> import numpy as np
>>> from jaxprop.training import distributed
>>> distributed.initialize(num_processes=1)  # the one-process case: nothing to connect
>>> mesh = distributed.global_mesh()
>>> x = np.arange(16.0).reshape(8, 2)
>>> rows = distributed.local_rows(8, mesh)  # with one process: all of them
>>> rows
slice(0, 8, None)
>>> x_global = distributed.global_array(x[rows], mesh)
>>> x_global.shape, distributed.is_global(x_global)
((8, 2), False)

Then ``distributed.train(params, x_global, Y_global, optimizer, model=model, steps=...,
mesh=mesh)`` as :func:`jaxprop.train`.

Launch (each process a command of its own; see docs/distributed.md for SLURM)::

    python experiments/distributed_train.py --coordinator HOST0:PORT --num-processes 2 \\
        --process-id 0
    python experiments/distributed_train.py --coordinator HOST0:PORT --num-processes 2 \\
        --process-id 1
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxprop.training import loop

__all__ = [
    "BATCH_AXIS",
    "RUNS_AXIS",
    "global_array",
    "global_mesh",
    "initialize",
    "is_global",
    "local_rows",
    "shard_runs",
    "train",
]

BATCH_AXIS = loop.BATCH_AXIS


RUNS_AXIS = "runs"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_devices: int | None = None,
    timeout_s: int = 300,
) -> None:
    """Joins this process to the others of the run (``jax.distributed.initialize``).

    Call it first, before any JAX computation, in every process, with the same
    ``coordinator_address`` and ``num_processes`` and each its own ``process_id`` (0 is the
    coordinator, which listens on the address). Without any of the three, JAX reads them from
    the cluster's environment (SLURM, Open MPI, ...). ``num_processes=1`` does nothing: a
    one-process run needs no runtime, so the same script runs alone or with others.

    On the CPU the processes' collectives (the all-reduce of the gradient) go through Gloo over
    TCP (``jax_cpu_collectives_implementation``, set to ``"gloo"`` here unless it names another
    implementation); without them every cross-process computation fails with ``INVALID_ARGUMENT:
    Multiprocess computations aren't implemented on the CPU backend``.

    Args:
      coordinator_address: ``"host:port"`` of process 0, reachable from every process.
      num_processes: how many processes take part.
      process_id: this process's index, 0 .. num_processes − 1.
      local_devices: split this process's CPU into that many devices
        (``jax_num_cpu_devices``; the CPU only, and only before JAX's backend has started).
      timeout_s: how long to wait for all processes to connect.

    Raises:
      ValueError: for a process id outside 0 .. num_processes − 1 or a count below 1.
      RuntimeError: from JAX, when called after a computation or twice.
    """
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be between 0 and {num_processes - 1}, got {process_id}")
    if local_devices is not None:
        if local_devices < 1:
            raise ValueError(f"local_devices must be >= 1, got {local_devices}")
        jax.config.update("jax_num_cpu_devices", local_devices)
    if num_processes == 1:
        return
    # A flag of jax's that its Config class declares only at run time (mypy cannot see it).
    if jax.config.jax_cpu_collectives_implementation is None:  # type: ignore[attr-defined]
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
    )


def global_mesh(runs: int | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The mesh over every process's devices (``jax.devices()``, the same list everywhere).

    ``runs=None``: one axis ``"batch"``, like :func:`jaxprop.training.data_mesh` over all the
    devices, for :func:`train`'s data parallelism. ``runs=k``: two axes ``("runs", "batch")`` of
    k rows, each a group of consecutive devices (in process order, so with k equal to the number
    of processes each process holds one row and a run's batch all-reduces stay inside it): a
    sweep's runs go along ``"runs"`` (:func:`shard_runs`), each run's examples along
    ``"batch"``. :func:`train` shards the examples along ``"batch"`` and replicates over
    ``"runs"``.

    Raises:
      ValueError: when ``runs`` does not divide the number of devices.
    """
    devs = np.asarray(list(jax.devices() if devices is None else devices))
    if runs is None:
        return Mesh(devs, (BATCH_AXIS,))
    if runs < 1 or devs.size % runs:
        raise ValueError(f"runs={runs} must divide the {devs.size} devices of the mesh")
    return Mesh(devs.reshape(runs, devs.size // runs), (RUNS_AXIS, BATCH_AXIS))


def shard_runs(params, mesh: Mesh):
    """A sweep's parameters (every leaf with a leading axis of runs, as
    :func:`jaxprop.training.train_sweep` takes them) placed along the mesh's ``"runs"`` axis:
    each device holds its row's runs, replicated over ``"batch"``. Every process passes the same
    values (JAX checks). ``train_sweep`` then runs each group of runs on its own devices; on one
    process this works as it is, over several processes ``train_sweep`` must gather the losses
    it reads (see docs/distributed.md).

    Raises:
      ValueError: for a mesh without a ``"runs"`` axis, or a number of runs that its size does
        not divide.
    """
    if RUNS_AXIS not in mesh.axis_names:
        raise ValueError(
            f"mesh has axes {mesh.axis_names}: expected one named {RUNS_AXIS!r} "
            "(global_mesh(runs=k))"
        )
    size = mesh.shape[RUNS_AXIS]
    for leaf in jax.tree.leaves(params):
        runs = np.shape(leaf)[0] if np.ndim(leaf) else 0
        if runs == 0 or runs % size:
            raise ValueError(
                f"a leaf of shape {list(np.shape(leaf))}: expected a leading axis of runs, a "
                f"multiple of the mesh's {size} rows"
            )
    return jax.device_put(params, NamedSharding(mesh, PartitionSpec(RUNS_AXIS)))


def _rows(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def local_rows(n: int, mesh: Mesh | None = None) -> slice:
    """The rows of an ``n``-row array that this process's devices hold when it is sharded along
    the mesh's ``"batch"`` axis: the rows this process loads for :func:`global_array`.

    Raises:
      ValueError: when ``n`` is not a multiple of the batch axis's size (the rows would not
        split evenly).
    """
    mesh = global_mesh() if mesh is None else mesh
    size = mesh.shape[BATCH_AXIS]
    if n % size:
        raise ValueError(f"{n} rows do not split evenly over the mesh's {size} batch shards")
    spans = set()
    for index in _rows(mesh).addressable_devices_indices_map((n,)).values():
        assert index is not None  # a NamedSharding gives every device an index
        first = index[0]
        spans.add((first.start or 0, n if first.stop is None else first.stop))
    ordered = sorted(spans)
    for (_, stop), (start, _) in itertools.pairwise(ordered):
        if start != stop:  # a mesh whose devices interleave the processes
            raise ValueError(f"this process's rows are not contiguous: {ordered}")
    return slice(ordered[0][0], ordered[-1][1])


def global_array(local, mesh: Mesh | None = None, *, rows: int | None = None) -> jax.Array:
    """One array over all processes from each process's own rows (``local``, the rows
    :func:`local_rows` names), sharded along the mesh's ``"batch"`` axis
    (``jax.make_array_from_process_local_data``). Every process calls it, with its own rows.

    Args:
      local: this process's rows, shape (n_local, ...).
      mesh: the global mesh (default :func:`global_mesh`).
      rows: the number of rows of the global array (default: inferred by JAX from the local
        rows, which needs every process to hold as many).
    """
    mesh = global_mesh() if mesh is None else mesh
    local = np.asarray(local)
    shape = None if rows is None else (rows, *local.shape[1:])
    return jax.make_array_from_process_local_data(_rows(mesh), local, shape)


def is_global(a) -> bool:
    """Whether ``a`` is a jax.Array with shards on other processes' devices."""
    return isinstance(a, jax.Array) and not a.is_fully_addressable


def _whole(a):
    """A global array's whole value on this process (every process calls it); anything else
    as it is."""
    if is_global(a):
        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return a


def train(
    params,
    x,
    Y,
    optimizer,
    *,
    mesh: Mesh | None = None,
    test_data: tuple[Any, Any] | None = None,
    progress: bool | None = None,
    **kwargs,
) -> loop.TrainResult:
    """:func:`jaxprop.train` data-parallel over the global mesh, on one process or many.

    Every process calls it with the same arguments, except that ``x``, ``Y`` (and
    ``test_data``) may be global arrays made by :func:`global_array` from each process's own
    rows. ``jaxprop.train`` takes only arrays it can read whole on each process, so a global
    array is first gathered onto every process (``process_allgather``; the data set is then held
    whole by each process, as when every process loads it all) and sharded again by
    ``jaxprop.train``. The progress bar shows on process 0 only; ``callback`` runs on every
    process with the same metrics. The result's losses are the same on every process; its
    parameters are replicated global arrays (``np.asarray`` reads them on any process).

    Args:
      params: as for :func:`jaxprop.train`.
      x: as for :func:`jaxprop.train`, or a global array.
      Y: as for :func:`jaxprop.train`, or a global array.
      optimizer: as for :func:`jaxprop.train`.
      mesh: a mesh with a ``"batch"`` axis over all processes' devices (default
        :func:`global_mesh`).
      test_data: as for :func:`jaxprop.train`, each array possibly a global array.
      progress: as for :func:`jaxprop.train`; shown on process 0 only.
      **kwargs: the other keyword arguments of :func:`jaxprop.train`.
    """
    mesh = global_mesh() if mesh is None else mesh
    if jax.process_index() != 0:
        progress = False
    x, Y = _whole(x), _whole(Y)
    if test_data is not None and isinstance(test_data, tuple | list) and len(test_data) == 2:
        test_data = (_whole(test_data[0]), _whole(test_data[1]))
    return loop.train(
        params, x, Y, optimizer, mesh=mesh, test_data=test_data, progress=progress, **kwargs
    )
