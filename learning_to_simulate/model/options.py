"""Options: configuration fields that are also command-line flags.

An option is one field of a frozen configuration dataclass, declared with
`option(default, help)`. The field is what the code reads and what
`config.json` saves; `define_flags` makes its flag (the name, type and default
come from the field) and `from_flags` builds the values back from the parsed
flags. Adding a model option is one entry in `ModelConfig` (and its module in
`model/`): the CLI's flag, the saved configuration and the flag's
documentation check (`tests/test_docs.py`) follow from it.

Types: `bool`, `int`, `float`, `str` (an enum with `choices`), each possibly
`Optional` (default None), and `Tuple[float, ...]` (a comma-separated list).
"""

import dataclasses
import sys
import typing
from typing import Any, Dict, Optional, Sequence

from absl import flags

_NOT_GIVEN = object()


def option(default: Any, help: str,  # pylint: disable=redefined-builtin
           flag: Any = _NOT_GIVEN,
           choices: Optional[Sequence[str]] = None) -> Any:
  """A dataclass field that is a flag.

  Args:
    default: the field's default, and the flag's.
    help: the flag's help text.
    flag: the flag's name if not the field's; None: no flag (the field is
      set in code only).
    choices: the allowed values of a `str` field (an enum flag).
  """
  metadata = {"help": help, "choices": choices}
  if flag is not _NOT_GIVEN:
    metadata["flag"] = flag
  return dataclasses.field(default=default, metadata=metadata)


def flag_names(cls: type) -> Dict[str, str]:
  """`{field name: flag name}` of the fields of `cls` that are flags."""
  return {field.name: field.metadata.get("flag", field.name)
          for field in dataclasses.fields(cls)
          if "help" in field.metadata and
          field.metadata.get("flag", field.name) is not None}


def _base_type(annotation: Any) -> Any:
  """`X` of `X` or `Optional[X]`."""
  if typing.get_origin(annotation) is typing.Union:
    (annotation,) = [arg for arg in typing.get_args(annotation)
                     if arg is not type(None)]
  return annotation


def define_flags(cls: type, module_name: str,
                 flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines a flag for each option of `cls`, as declared in `module_name`
  (the module whose `--help` lists them)."""
  if module_name == "__main__":  # As absl names a script's own flags.
    module_name = sys.argv[0]
  hints = typing.get_type_hints(cls)
  for field in dataclasses.fields(cls):
    if field.name not in flag_names(cls):
      continue
    name = flag_names(cls)[field.name]
    kind = _base_type(hints[field.name])
    kwargs = dict(name=name, default=field.default,
                  help=field.metadata["help"], flag_values=flag_values,
                  module_name=module_name)
    if kind is bool:
      flags.DEFINE_boolean(**kwargs)
    elif kind is int:
      flags.DEFINE_integer(**kwargs)
    elif kind is float:
      flags.DEFINE_float(**kwargs)
    elif kind is str and field.metadata["choices"]:
      flags.DEFINE_enum(enum_values=list(field.metadata["choices"]), **kwargs)
    elif kind is str:
      flags.DEFINE_string(**kwargs)
    elif typing.get_origin(kind) is tuple:
      flags.DEFINE_list(**kwargs)
    else:
      raise TypeError(f"{cls.__name__}.{field.name}: no flag type for "
                      f"{hints[field.name]}")


def from_flags(cls: type, flag_values: flags.FlagValues = flags.FLAGS,
               only_given: bool = False) -> Dict[str, Any]:
  """`{field name: value}` of the options of `cls`, read from the parsed
  flags (with `only_given`, those the user set on the command line)."""
  return {field: flag_values[name].value
          for field, name in flag_names(cls).items()
          if not only_given or flag_values[name].present}
