"""`python -m kubetrader_dashboard.auth`: write the built-in login's users file.

    python -m kubetrader_dashboard.auth add-user users.yaml alice --role researcher   # asks for the password
    python -m kubetrader_dashboard.auth remove-user users.yaml alice
    python -m kubetrader_dashboard.auth hash-password                                 # prints a hash

In a cluster the file is a Secret:
`kubectl -n kubetrader create secret generic kubetrader-dashboard-users --from-file=users.yaml`.
The password is read from the terminal (or one line of standard input), never from the command line.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from kubetrader_dashboard.auth.passwords import hash_password
from kubetrader_dashboard.auth.roles import Role
from kubetrader_dashboard.auth.users import UserEntry, UsersFile, read_users, write_users


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise SystemExit("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubetrader_dashboard.auth")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add-user", help="add or replace a user (asks for the password)")
    add.add_argument("file", type=Path)
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    remove = commands.add_parser("remove-user", help="remove a user")
    remove.add_argument("file", type=Path)
    remove.add_argument("name")
    commands.add_parser("hash-password", help="print the hash of a password")
    args = parser.parse_args(argv)
    try:
        if args.command == "hash-password":
            sys.stdout.write(hash_password(_password()) + "\n")
            return 0
        users = read_users(args.file) if args.file.exists() else UsersFile()
        if args.command == "add-user":
            entry = UserEntry(role=Role(args.role), password_hash=hash_password(_password()))
            users = UsersFile(users={**users.users, args.name: entry})
        elif users.users.pop(args.name, None) is None:
            raise ValueError(f"{args.file}: no user {args.name!r}")
        write_users(args.file, users)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
