"""Options: a configuration field is its flag (`model.options`)."""

import dataclasses
from typing import Optional, Tuple

from absl import flags
import tensorflow as tf

from learning_to_simulate.model import options
from learning_to_simulate.model.options import option


@dataclasses.dataclass(frozen=True)
class Example:
  size: int = option(3, "A size.")
  rate: float = option(0.5, "A rate.")
  on: bool = option(False, "A switch.")
  kind: str = option("a", "A kind.", choices=("a", "b"))
  limit: Optional[int] = option(None, "A limit.", flag="example_limit")
  vector: Optional[Tuple[float, ...]] = option(None, "A vector.")
  internal: str = "kept out of the flags"


class OptionsTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.flag_values = flags.FlagValues()
    options.define_flags(Example, "example", self.flag_values)

  def test_each_option_is_a_flag_of_its_type_and_default(self):
    self.assertEqual(options.flag_names(Example), {
        "size": "size", "rate": "rate", "on": "on", "kind": "kind",
        "limit": "example_limit", "vector": "vector"})
    self.flag_values(["prog"])
    self.assertEqual(Example(**options.from_flags(Example, self.flag_values)),
                     Example())
    self.assertCountEqual(
        [flag.name for flag in
         self.flag_values.get_flags_for_module("example")],
        ["example_limit", "kind", "on", "rate", "size", "vector"])

  def test_parsed_flags_build_the_dataclass(self):
    self.flag_values(["prog", "--size=7", "--rate=0.25", "--on", "--kind=b",
                      "--example_limit=4", "--vector=1,-2"])
    self.assertEqual(
        options.from_flags(Example, self.flag_values),
        dict(size=7, rate=0.25, on=True, kind="b", limit=4,
             vector=["1", "-2"]))
    self.assertEqual(
        Example(**options.from_flags(Example, self.flag_values)).size, 7)

  def test_only_given_reads_what_the_command_line_set(self):
    self.flag_values(["prog", "--rate=2", "--noon"])
    self.assertEqual(
        options.from_flags(Example, self.flag_values, only_given=True),
        {"rate": 2.0, "on": False})

  def test_a_bad_value_is_refused_by_its_flag(self):
    with self.assertRaises(flags.IllegalFlagValueError):
      self.flag_values(["prog", "--kind=c"])

  def test_a_type_without_a_flag_is_an_error(self):

    @dataclasses.dataclass(frozen=True)
    class Unsupported:
      mapping: dict = option(None, "No flag type.")

    with self.assertRaisesRegex(TypeError, "Unsupported.mapping"):
      options.define_flags(Unsupported, "example", flags.FlagValues())


if __name__ == "__main__":
  tf.test.main()
