"""The classifier every model family builds on its encoder: the head's input, the loss and what a save adds."""

from __future__ import annotations

import torch
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils.generic import can_return_tuple


class AudioClassifierMixin:
    """
    An encoder (`base_model`) and a classification head (`classifier`): what the package's classifiers (RespAudio's
    and EfficientAT's) share. A family says in `head_input` what its head reads (its record in `MODEL_TYPES` says
    whether that is `pooler_output`). `forward` adds the loss of
    `config.problem_type` (inferred from the labels when unset, as everywhere in transformers); `save_pretrained` also
    names the encoder for `AutoModel` and the package's pipeline in the saved config (`classifier_save_entries`).
    """

    def head_input(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_hidden_states: bool | None,
        output_attentions: bool | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """`(features the head reads, hidden states or None, attentions or None)` of the encoder."""
        raise NotImplementedError

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is None:
            return super().save_pretrained(save_directory, *args, **kwargs)
        from .auto_classes import classifier_save_entries

        with classifier_save_entries(self.config, type(self.base_model)):
            return super().save_pretrained(save_directory, *args, **kwargs)

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        features, hidden_states, attentions = self.head_input(
            input_values, attention_mask, output_hidden_states, output_attentions
        )
        logits = self.classifier(features)
        loss = None
        if labels is not None:
            loss = self.loss_function(labels.to(logits.device), logits, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states, attentions=attentions)


__all__ = ["AudioClassifierMixin"]
