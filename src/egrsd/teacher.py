"""The privileged teacher's prompt: the student's prompt with the reference solution joined to the last user turn."""

import string
from collections.abc import Mapping
from typing import Any


# The placeholders a teacher template may use, and the dataset column each one reads.
TEMPLATE_PLACEHOLDERS = ("problem", "solution", "answer")

DEFAULT_TEACHER_TEMPLATE = (
    "{problem}\n\n"
    "Here is a reference solution to this problem:\n"
    "{solution}\n\n"
    "After understanding the reference solution, solve the problem yourself."
)


def template_fields(template: str) -> set[str]:
    """Placeholder names used in `template`; raises if one is not among TEMPLATE_PLACEHOLDERS."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = fields - set(TEMPLATE_PLACEHOLDERS)
    if unknown or "" in fields:
        raise ValueError(
            f"teacher_template uses unknown placeholder(s) {sorted(unknown or {''})}; "
            f"allowed: {['{' + p + '}' for p in TEMPLATE_PLACEHOLDERS]}. Escape literal braces as '{{{{' and '}}}}'."
        )
    if "problem" not in fields:
        raise ValueError("teacher_template must contain '{problem}', where the student's prompt goes.")
    return fields


def required_columns(template: str, solution_column: str = "solution") -> list[str]:
    """Dataset columns the template needs ({problem} comes from the prompt itself)."""
    fields = template_fields(template)
    columns = []
    if "solution" in fields:
        columns.append(solution_column)
    if "answer" in fields:
        columns.append("answer")
    return columns


def build_teacher_prompt(
    prompt: str | list[dict[str, Any]],
    example: Mapping[str, Any],
    template: str = DEFAULT_TEACHER_TEMPLATE,
    solution_column: str = "solution",
) -> str | list[dict[str, Any]]:
    """Return the teacher's prompt: the last user message (or the plain prompt) with the privileged context added.

    The rest of the conversation (system prompt, earlier turns) is kept unchanged, so the chat template renders
    both prompts the same way except for that one message.
    """
    values = {"solution": example.get(solution_column), "answer": example.get("answer")}
    fields = template_fields(template)
    for name in fields - {"problem"}:
        if values[name] is None:
            column = solution_column if name == "solution" else "answer"
            raise KeyError(f"teacher_template needs '{{{name}}}' but the example has no '{column}' value")
    if isinstance(prompt, str):
        return template.format(problem=prompt, **{k: str(v) for k, v in values.items()})
    last_user = max((i for i, m in enumerate(prompt) if m["role"] == "user"), default=None)
    if last_user is None:
        raise ValueError("the prompt has no user message to attach the privileged context to")
    content = prompt[last_user]["content"]
    if not isinstance(content, str):
        raise ValueError("teacher prompts support text-only user messages")
    new_content = template.format(problem=content, **{k: str(v) for k, v in values.items()})
    return [*prompt[:last_user], {**prompt[last_user], "content": new_content}, *prompt[last_user + 1 :]]
