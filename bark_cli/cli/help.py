"""What a command's help shows beside each option: a word that says what to give (N, X, FILE,
auto|cpu), never a type's name in angle brackets (`<int range>`, `<list[str]>`), and nothing
beside an on/off flag."""

from __future__ import annotations

HELP_OPTIONS = ("-h", "--help")


def plain_placeholders(command, recurse: bool = True) -> None:
    """Give every option of `command` (and of its subcommands) that declares no metavar one made
    from its type, and take the type column off arguments, whose name already says it."""
    if getattr(command, "add_help_option", False) and getattr(command, "_help_option", True) is None:
        # -h/--help is made on first use; make it now (as the parser would) to clear its placeholder.
        from typer._click.decorators import help_option

        taken = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
        help_option([name for name in HELP_OPTIONS if name not in taken])(command)
        command._help_option = command.params.pop()
        command._help_option.metavar = ""
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "argument":
            param.display_type_rich = _no_type
        elif param.metavar is None:
            param.metavar = placeholder(param)
    for sub in getattr(command, "commands", {}).values() if recurse else ():
        plain_placeholders(sub)


def _no_type(ctx) -> None:
    return None


def placeholder(param) -> str:
    """The word an option's help shows for its value: "" for a flag (it takes none), the choices
    joined by |, N for a whole number, X for a number, DIR, FILE or PATH for a path, else the
    option's name in capitals."""
    if getattr(param, "is_flag", False):
        return ""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        return (param.name or "value").upper()
    if descriptor.is_choice and descriptor.choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in descriptor.choices)
    if descriptor.is_path:
        return {"dir": "DIR", "file": "FILE"}.get(str(descriptor.path_type), "PATH")
    annotation = descriptor.annotation
    element = getattr(annotation, "__args__", (annotation,))[0] if descriptor.is_list else annotation
    if element is int:
        return "N"
    if element is float:
        return "X"
    return (param.name or "value").upper()
