"""Run ``codi2_sdk.train.align`` under FSDP2 on CPU processes (gloo), for the tests.

accelerate chooses FSDP only on accelerators (GPUs, NPUs, ...): on CPUs ``accelerate launch`` gives plain
multi-process data parallelism whatever the config says. This launcher lets the same run shard on CPUs: once the
``Accelerator`` exists, its state is switched to FSDP with the plugin the shipped ``examples/accelerate/fsdp.yaml``
describes (FSDP2, a unit per Llama decoder layer, full state dicts). Everything after that is accelerate's own FSDP2
path (``fully_shard``, DTensor parameters, ``get_state_dict``), and the SDK's.

    accelerate launch --multi_gpu --num_processes 2 tests/fsdp_on_cpu.py --model ... --stage llm ...
"""

from __future__ import annotations

import sys

import accelerate
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

_init = accelerate.Accelerator.__init__


def _sharded(self: accelerate.Accelerator, *args: object, **kwargs: object) -> None:
    _init(self, *args, **kwargs)
    if self.state.distributed_type == DistributedType.MULTI_CPU:
        # both shared states: every later AcceleratorState() copies the partial state's over its own
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.state.distributed_type = DistributedType.FSDP
        self.state.fsdp_plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2,
            auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=["LlamaDecoderLayer"],
            state_dict_type="SHARDED_STATE_DICT",
        )


accelerate.Accelerator.__init__ = _sharded  # type: ignore[method-assign]

if __name__ == "__main__":
    from codi2_sdk.train.align import main

    sys.exit(main(sys.argv[1:]))
