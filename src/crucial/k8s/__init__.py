"""Running DSO nodes on Kubernetes: manifests built from a ``DSOCluster`` spec, and its operator.

:mod:`crucial.k8s.manifests` is pure (no Kubernetes library needed);
:mod:`crucial.k8s.operator` needs ``pip install 'crucial[k8s]'`` (kopf and the
kubernetes client).  ``python -m crucial.k8s render`` prints the plain
manifests of ``deploy/k8s/``.  See ``docs/kubernetes.md``.
"""

__all__: list[str] = []
