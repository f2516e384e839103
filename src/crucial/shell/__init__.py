"""The serverless shell: ``sshell`` runs shell commands as cloud functions,
and IPC verbs (``counter``, ``barrier``, ``latch``, ``rdv``, ``map``,
``treemap``, ``list``) let those commands share state through the DSO.

Layout:

* :mod:`.verbs` -- parsing the original CRUCIAL verb syntax and running a
  verb against the DSO: ``run_verb(argv, stdin) -> VerbResult``;
* :mod:`.ipc` -- serving verbs inside an invocation without a new Python
  interpreter per call (a local TCP socket plus bash functions), and the
  client-side entry point;
* :mod:`.sshell` -- the ``sshell`` command.
"""
