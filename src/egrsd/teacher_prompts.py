"""The privileged teacher's prompt: the student's prompt with its privileged context (a reference solution, the final
answer, or a successful sibling rollout) joined to the last user turn."""

import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any


# The placeholders a teacher template may use, and the dataset column each one reads.
TEMPLATE_PLACEHOLDERS = ("problem", "solution", "answer")

DEFAULT_TEACHER_TEMPLATE = (
    "{problem}\n\n"
    "Here is a reference solution to this problem:\n"
    "{solution}\n\n"
    "After understanding the reference solution, solve the problem yourself."
)
ANSWER_TEACHER_TEMPLATE = (
    "{problem}\n\nThe final answer to this problem is: {answer}\n\nKnowing the answer, solve the problem yourself."
)
# A demonstration (a successful sibling rollout) fills `{solution}`.
DEMONSTRATION_TEACHER_TEMPLATE = (
    "{problem}\n\n"
    "Here is a correct solution to this problem:\n"
    "{solution}\n\n"
    "After understanding this solution, solve the problem yourself."
)
# Where the teacher's privileged context comes from, and its default template.
TEACHER_CONTEXTS = {
    "solution": DEFAULT_TEACHER_TEMPLATE,
    "answer": ANSWER_TEACHER_TEMPLATE,
    "successful_rollout": DEMONSTRATION_TEACHER_TEMPLATE,
}


def template_fields(template: str) -> set[str]:
    """Placeholder names used in `template`; raises if one is not among TEMPLATE_PLACEHOLDERS."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:  # a lone brace: "Single '}' encountered", "expected '}' before end of string"
        raise ValueError(
            f"teacher_template is not a valid template ({error}): a literal brace is written '{{{{' or '}}}}', and "
            f"placeholders are {['{' + p + '}' for p in TEMPLATE_PLACEHOLDERS]}"
        ) from None
    unknown = fields - set(TEMPLATE_PLACEHOLDERS)
    if unknown or "" in fields:
        raise ValueError(
            f"teacher_template uses unknown placeholder(s) {sorted(unknown or {''})}; "
            f"allowed: {['{' + p + '}' for p in TEMPLATE_PLACEHOLDERS]}. Escape literal braces as '{{{{' and '}}}}'."
        )
    if "problem" not in fields:
        raise ValueError("teacher_template must contain '{problem}', where the student's prompt goes.")
    return fields


def required_columns(template: str, solution_column: str = "solution", context: str = "solution") -> list[str]:
    """Dataset columns the template needs ({problem} comes from the prompt itself, and with `successful_rollout`
    {solution} from a sibling rollout)."""
    fields = template_fields(template)
    columns = []
    if "solution" in fields and context != "successful_rollout":
        columns.append(solution_column)
    if "answer" in fields:
        columns.append("answer")
    return columns


_CONTENT_SENTINEL = "EGRSD-USER-CONTENT-SENTINEL"


def user_turn_markers(render: Callable[[list[dict[str, str]]], str], bos_token: str | None = None) -> tuple[str, str]:
    """The text a chat template writes before and after a user message's content (ChatML: "<|im_start|>user" and a
    newline, then "<|im_end|>"): how the last user turn of an already-formatted string prompt is found.

    `render(messages)` renders a conversation without the generation prompt. Returns ("", "") when the template does
    not show the content exactly once.
    """
    text = render([{"role": "user", "content": _CONTENT_SENTINEL}])
    if text.count(_CONTENT_SENTINEL) != 1:
        return "", ""
    before, after = text.split(_CONTENT_SENTINEL)
    close = after.strip()
    if close and close in before:  # e.g. a default system turn before the user's: keep the user turn's opener only
        before = before[before.rindex(close) + len(close) :]
    if bos_token and before.startswith(bos_token):
        before = before[len(bos_token) :]
    before = before.lstrip("\n")
    return (before, close) if before and close else ("", "")


def build_teacher_prompt(
    prompt: str | list[dict[str, Any]],
    example: Mapping[str, Any],
    template: str = DEFAULT_TEACHER_TEMPLATE,
    solution_column: str = "solution",
    user_turn: tuple[str, str] = ("", ""),
) -> str | list[dict[str, Any]]:
    """Return the teacher's prompt: the last user message (or the plain prompt) with the privileged context added.

    The rest of the conversation (system prompt, earlier turns) is kept unchanged, so the chat template renders
    both prompts the same way except for that one message. A string prompt that is already chat-formatted (it holds
    `user_turn`'s opener, see `user_turn_markers`) gets the context inside its last user turn, not after the
    generation prompt.
    """
    values = {"solution": example.get(solution_column), "answer": example.get("answer")}
    fields = template_fields(template)
    for name in fields - {"problem"}:
        if values[name] is None:
            column = solution_column if name == "solution" else "answer"
            raise KeyError(f"teacher_template needs '{{{name}}}' but the example has no '{column}' value")
    if isinstance(prompt, str):
        opener, closer = user_turn
        start = prompt.rfind(opener) if opener and closer else -1
        end = prompt.find(closer, start + len(opener)) if start >= 0 else -1
        if end < 0:
            return template.format(problem=prompt, **{k: str(v) for k, v in values.items()})
        content_start = start + len(opener)
        content = template.format(problem=prompt[content_start:end], **{k: str(v) for k, v in values.items()})
        return prompt[:content_start] + content + prompt[end:]
    last_user = max((i for i, m in enumerate(prompt) if m["role"] == "user"), default=None)
    if last_user is None:
        raise ValueError("the prompt has no user message to attach the privileged context to")
    content = prompt[last_user]["content"]
    if not isinstance(content, str):
        raise ValueError("teacher prompts support text-only user messages")
    new_content = template.format(problem=content, **{k: str(v) for k, v in values.items()})
    return [*prompt[:last_user], {**prompt[last_user], "content": new_content}, *prompt[last_user + 1 :]]


def template_context_problems(template: str, context: str) -> list[str]:
    """What contradicts between `teacher_context` and the placeholders `teacher_template` uses."""
    fields = template_fields(template)
    if context == "answer" and "solution" in fields:
        return [
            "teacher_context='answer' gives the teacher the final answer only, but teacher_template shows "
            "'{solution}' — use '{answer}' in the template, or teacher_context='solution'"
        ]
    if context == "answer" and "answer" not in fields:
        return [
            "teacher_context='answer' needs '{answer}' in teacher_template — add it, or leave teacher_template "
            "unset for the default answer template"
        ]
    if context == "successful_rollout" and "solution" not in fields:
        return [
            "teacher_context='successful_rollout' puts the demonstration where teacher_template shows "
            "'{solution}', which it lacks — add it, or leave teacher_template unset for the default"
        ]
    return []


def demonstration_sources(rewards: Sequence[float], group_size: int, threshold: float) -> list[int | None]:
    """For each rollout, the index of the sibling whose completion demonstrates the problem, or None.

    Rollouts come in groups of `group_size` consecutive rows (one problem each). A success is a rollout whose
    reward reaches `threshold` (NaN never does). Each rollout gets the next success of its group after itself,
    cyclically, so siblings see different demonstrations; itself only when it is the group's one success; None in a
    group without a success.
    """
    if len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not form groups of {group_size}")
    sources: list[int | None] = []
    for start in range(0, len(rewards), group_size):
        successes = [i for i in range(start, start + group_size) if rewards[i] >= threshold]  # NaN >= x is False
        for row in range(start, start + group_size):
            others = [i for i in successes if i != row]
            if not others:
                sources.append(row if row in successes else None)
                continue
            after = [i for i in others if i > row]
            sources.append(after[0] if after else others[0])
    return sources


def without_thinking(text: str) -> str:
    """The completion with its thinking block removed (everything up to the last `</think>`), SDPO's
    `remove_thinking_from_demonstration`; a text without one is returned unchanged."""
    if "</think>" not in text:
        return text
    return text.rsplit("</think>", 1)[1].strip()
