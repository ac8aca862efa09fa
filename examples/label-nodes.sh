#!/usr/bin/env bash
# Put nodes into NodeUnits: every value of the label key is one NodeUnit. Edit the node names.
set -euo pipefail
kubectl label node edge-1 edge-2 zone=zone-a --overwrite
kubectl label node edge-3 edge-4 zone=zone-b --overwrite
# Move a node to another NodeUnit (its grids' pods follow; its kube-proxy's routes follow):
#   kubectl label node edge-2 zone=zone-b --overwrite
# Take a node out of every NodeUnit of this key:
#   kubectl label node edge-4 zone-
kubectl get nodes -L zone
