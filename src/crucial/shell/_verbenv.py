"""What bash needs to call a verb server: the verb functions and the variables that carry them.

Apart from :mod:`.ipc` (the server, a Python caller, :func:`.ipc.run_shell`)
so that the quick ``sshell`` path (:mod:`._quick`) can hand a command its
verbs while importing nothing but this: the server itself (and the DSO
client behind it) loads only when the command calls its first verb.  The
protocol these functions speak is described in :mod:`.ipc`.
"""

from __future__ import annotations

__all__ = [
    "IPC_PORT_ENV",
    "IPC_SECRET_ENV",
    "MAGIC",
    "UNREACHABLE",
    "VERB_NAMES",
    "bash_functions",
    "bash_prelude",
    "env_assignment",
    "function_env",
]

MAGIC = "CRUCIAL-IPC/1"
IPC_PORT_ENV = "CRUCIAL_IPC_PORT"
IPC_SECRET_ENV = "CRUCIAL_IPC_SECRET"
UNREACHABLE = 70  # EX_SOFTWARE: the verb server could not be reached or did not answer
VERB_NAMES = ("counter", "barrier", "latch", "rdv", "map", "treemap", "list")


# ``__crucial_ipc VERB ARGS...``: one call to the server (see the module docstring).
# ``local -`` restores the caller's set options on return, so the body runs
# without -e/-u/-x whatever the script set; ``local LC_ALL=C`` makes lengths bytes.
_CALL_BODY = r"""{
    local - LC_ALL=C __cr_fd __cr_tok=- __cr_a __cr_in=0 __cr_one=0 __cr_code __cr_olen __cr_elen __cr_buf
    set +e +u +x
    case "$1" in
    map|treemap)
        for __cr_a in "$@"; do
            case "$__cr_a" in
            put-all|putAll|put_all|merge-all|mergeAll|merge_all) __cr_in=1 ;;
            -1) __cr_one=1 ;;
            esac
        done ;;
    esac
    if [ "$__cr_in" = 1 ] && [ "$__cr_one" = 0 ] && [ ! -t 0 ]; then
        __cr_tok="$BASHPID.$RANDOM.$RANDOM"
        if ! { exec {__cr_fd}<>/dev/tcp/127.0.0.1/@PORT@; } 2>/dev/null; then
            printf '%s: cannot reach the crucial verb server at 127.0.0.1:%s\n' "$1" @PORT@ >&2
            return @UNREACHABLE@
        fi
        printf 'CRUCIAL-IPC/1 @SECRET@ stdin %s\n' "$__cr_tok" >&"$__cr_fd"
        cat >&"$__cr_fd"
        exec {__cr_fd}>&-
    fi
    if ! { exec {__cr_fd}<>/dev/tcp/127.0.0.1/@PORT@; } 2>/dev/null; then
        printf '%s: cannot reach the crucial verb server at 127.0.0.1:%s\n' "$1" @PORT@ >&2
        return @UNREACHABLE@
    fi
    printf 'CRUCIAL-IPC/1 @SECRET@ call %d %s\n' "$#" "$__cr_tok" >&"$__cr_fd"
    printf '%s\0' "$@" >&"$__cr_fd"
    if ! IFS=' ' read -r __cr_code __cr_olen __cr_elen <&"$__cr_fd" || [ -z "$__cr_elen" ]; then
        exec {__cr_fd}<&-
        printf '%s: no answer from the crucial verb server at 127.0.0.1:%s\n' "$1" @PORT@ >&2
        return @UNREACHABLE@
    fi
    if [ "$__cr_elen" -gt 0 ]; then
        IFS= read -r -N "$__cr_elen" __cr_buf <&"$__cr_fd"
        printf '%s' "$__cr_buf" >&2
    fi
    if [ "$__cr_olen" -gt 65536 ]; then
        cat <&"$__cr_fd"
    elif [ "$__cr_olen" -gt 0 ]; then
        IFS= read -r -N "$__cr_olen" __cr_buf <&"$__cr_fd"
        printf '%s' "$__cr_buf"
    fi
    exec {__cr_fd}<&-
    return "$__cr_code"
}"""


def bash_functions(port: int, secret: str) -> dict[str, str]:
    """The bash functions (name -> body, ``{ ... }``) that call the server at ``port``."""
    if not (isinstance(port, int) and 0 < port < 65536) or not secret.isalnum():
        raise ValueError("a verb server's port and alphanumeric secret are needed")
    body = _CALL_BODY.replace("@PORT@", str(port)).replace("@SECRET@", secret).replace("@UNREACHABLE@", str(UNREACHABLE))
    funcs = {"__crucial_ipc": body}
    for verb in VERB_NAMES:
        funcs[verb] = "{\n    __crucial_ipc " + verb + ' "$@"\n}'
    return funcs


def bash_prelude(port: int, secret: str = "") -> str:
    """Bash code defining (and exporting) one function per verb, served by the server at ``port``.

    ``secret`` is the server's (:attr:`VerbServer.secret`); the verb functions
    are exported with ``export -f`` so subshells and ``xargs bash -c`` see them.
    """
    if not secret:
        raise ValueError("bash_prelude needs the server's secret (VerbServer.secret)")
    funcs = bash_functions(port, secret)
    lines = [f"{name} () {body}" for name, body in funcs.items()]
    lines.append("export -f " + " ".join(funcs))
    return "\n".join(lines) + "\n"


def function_env(port: int, secret: str) -> dict[str, str]:
    """The environment variables through which bash imports the functions (as ``export -f`` makes them)."""
    return {f"BASH_FUNC_{name}%%": f"() {body}" for name, body in bash_functions(port, secret).items()}


def env_assignment(item: str) -> tuple[str, str] | None:
    """``KEY=VALUE`` (``sshell -e``) as ``(KEY, VALUE)``; ``None`` unless KEY is a shell variable name."""
    name, sep, value = item.partition("=")
    if not sep or not name or not name.replace("_", "a").isalnum() or not name.isascii() or name[0].isdigit():
        return None
    return name, value
