"""The splits of a procedural builder: examples drawn from (config, split, index)."""

from __future__ import annotations


class ProceduralSplits:
  """Mixin for a `tfds.core.GeneratorBasedBuilder` whose examples are a pure function of its
  config, the split and the index: a train and a test split of `builder_config.num_train` and
  `num_test` examples, keyed by index, nothing to download. The builder defines
  `_example(split, index) -> dict` (the features of one example)."""

  def _split_generators(self, dl_manager):
    del dl_manager  # procedural: nothing to download
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "test": self._generate_examples("test", c.num_test)}

  def _generate_examples(self, split: str, count: int):
    for index in range(count):
      yield index, self._example(split, index)
