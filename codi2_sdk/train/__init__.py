"""Training: the one loop (:func:`train_loop`) and fine-tuning a model's LLM on interleaved conversations.

>>> from codi2_sdk import Conversation
>>> from codi2_sdk.model import CoDi2Model
>>> from codi2_sdk.train import examples_from_conversation, finetune
>>> model = CoDi2Model.from_pretrained("codi2-mini")                       # doctest: +SKIP
>>> data = [ex for path in paths for ex in examples_from_conversation(Conversation.load(path))]  # doctest: +SKIP
>>> finetune(model, data[:-20], eval_data=data[-20:], steps=300)          # doctest: +SKIP
>>> model.save_pretrained("my-codi2")                                        # doctest: +SKIP
"""

from .finetune import TrainingLog, examples_from_conversation, finetune
from .loop import HeldOutEvaluation, StepLog, held_out_evaluation, train_loop

__all__ = [
    "HeldOutEvaluation",
    "StepLog",
    "TrainingLog",
    "examples_from_conversation",
    "finetune",
    "held_out_evaluation",
    "train_loop",
]
