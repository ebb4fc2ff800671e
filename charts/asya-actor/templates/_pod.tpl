{{/*
The pod: the user's workload.template.spec with the runtime, the sidecar and
their volumes added. The actor's Deployment and its helm test pod both start
from "asya-actor.basePodSpec".
*/}}

{{/*
The chart's volumes: the runtime (an emptyDir the copy init container fills,
or the runtime image itself), the socket directory, and /tmp when the runtime
container uses it. Input: dict "root" "actor" "runtimeContainer". Output: JSON list.
*/}}
{{- define "asya-actor.volumes" -}}
{{- $a := .actor }}
{{- $root := .root }}
{{- $volumes := list }}
{{- if eq $a.runtimeDelivery "imageVolume" }}
{{- $volumes = append $volumes (dict "name" (include "asya-actor.runtimeVolume" $root) "image" (dict "reference" (include "asya-actor.runtimeImageRef" .) "pullPolicy" $a.runtimeImage.pullPolicy)) }}
{{- else }}
{{- $volumes = append $volumes (dict "name" (include "asya-actor.runtimeVolume" $root) "emptyDir" dict) }}
{{- end }}
{{- $volumes = append $volumes (dict "name" (include "asya-actor.socketVolume" $root) "emptyDir" dict) }}
{{- $tmpVolume := include "asya-actor.tmpVolume" $root }}
{{- range $mount := .runtimeContainer.volumeMounts }}
{{- if eq $mount.name $tmpVolume }}
{{- $emptyDir := dict }}
{{- if $a.tmpVolume.sizeLimit }}
{{- $_ := set $emptyDir "sizeLimit" $a.tmpVolume.sizeLimit }}
{{- end }}
{{- $volumes = append $volumes (dict "name" $tmpVolume "emptyDir" $emptyDir) }}
{{- end }}
{{- end }}
{{- toJson $volumes }}
{{- end }}

{{/*
Checks of workload.template.spec itself. Input: dict "root" "actor" "spec".
*/}}
{{- define "asya-actor.checkTemplateSpec" -}}
{{- $a := .actor }}
{{- $spec := .spec }}
{{- $runtimeName := include "asya-actor.runtimeContainerName" .root }}
{{- $ownVolumes := include "asya-actor.ownVolumes" .root | fromJsonArray }}
{{- if and $spec.restartPolicy (ne $spec.restartPolicy "Always") }}
{{- fail (printf "workload.template.spec.restartPolicy is %q: a Deployment's pods restart Always; remove it" $spec.restartPolicy) }}
{{- end }}
{{- range $field := list "nodeSelector" "tolerations" "affinity" }}
{{- if and (index $a $field) (index $spec $field) }}
{{- fail (printf "%s is set both as a top-level value and in workload.template.spec; set it in one place" $field) }}
{{- end }}
{{- end }}
{{- $names := list }}
{{- $runtimeCount := 0 }}
{{- range $container := $spec.containers | default list }}
{{- if not $container.name }}
{{- fail (printf "every container in workload.template.spec.containers needs a name; the model container is named %s" $runtimeName) }}
{{- end }}
{{- $names = append $names $container.name }}
{{- if eq $container.name (include "asya-actor.sidecarContainerName" $.root) }}
{{- fail (printf "workload.template.spec.containers has a container named %s: the chart adds the sidecar itself (configure it under the value sidecar); rename or remove that container" $container.name) }}
{{- end }}
{{- if eq $container.name $runtimeName }}
{{- $runtimeCount = add1 $runtimeCount }}
{{- end }}
{{- end }}
{{- if gt $runtimeCount 1 }}
{{- fail (printf "workload.template.spec.containers has more than one container named %s; keep one" $runtimeName) }}
{{- end }}
{{- if eq $runtimeCount 0 }}
{{- fail (printf "workload.template.spec.containers%s has no container named %s (found: %s). Give your model container that name, e.g.\nworkload:\n  template:\n    spec:\n      containers:\n      - name: %s\n        image: registry.example.com/ml/my-model:1.0" (ternary (printf " of actor %q" $a.actorName) "" $a.inList) $runtimeName (toJson $names) $runtimeName) }}
{{- end }}
{{- range $container := $spec.initContainers | default list }}
{{- if has $container.name (list (include "asya-actor.copyContainerName" $.root) $runtimeName) }}
{{- fail (printf "workload.template.spec.initContainers has a container named %s: the chart adds it (configure it under the value runtimeImage); rename or remove that init container" $container.name) }}
{{- end }}
{{- end }}
{{- range $volume := $spec.volumes | default list }}
{{- if has $volume.name $ownVolumes }}
{{- fail (printf "workload.template.spec.volumes has a volume named %q: the chart owns the volumes %s; rename yours" $volume.name (join ", " $ownVolumes)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
What the Deployment's pod and the test pod share: the user's spec with the
placement values, the runtime container rendered, the chart's init container
and volumes, the pod-level defaults. The runtime container is returned apart
(key "runtime"), not yet placed. Input: dict "root" "actor".
Output: JSON {spec, runtime, otherContainers}.
*/}}
{{- define "asya-actor.basePodSpec" -}}
{{- $root := .root }}
{{- $a := .actor }}
{{- $spec := deepCopy ($a.workload.template.spec | default dict) }}
{{- include "asya-actor.checkTemplateSpec" (dict "root" $root "actor" $a "spec" $spec) }}
{{- range $field := list "nodeSelector" "tolerations" "affinity" }}
{{- if index $a $field }}
{{- $_ := set $spec $field (deepCopy (index $a $field)) }}
{{- end }}
{{- end }}
{{- $runtimeName := include "asya-actor.runtimeContainerName" $root }}
{{- $runtime := dict }}
{{- $others := list }}
{{- range $container := $spec.containers }}
{{- if eq $container.name $runtimeName }}
{{- $runtime = include "asya-actor.runtimeContainer" (dict "root" $root "actor" $a "container" $container) | fromYaml }}
{{- else }}
{{- $others = append $others $container }}
{{- end }}
{{- end }}
{{- $initContainers := $spec.initContainers | default list }}
{{- if ne $a.runtimeDelivery "imageVolume" }}
{{- $initContainers = prepend $initContainers (include "asya-actor.copyInitContainer" . | fromYaml) }}
{{- end }}
{{- $_ := set $spec "initContainers" $initContainers }}
{{- $_ := set $spec "volumes" (concat ($spec.volumes | default list) (include "asya-actor.volumes" (dict "root" $root "actor" $a "runtimeContainer" $runtime) | fromJsonArray)) }}
{{- $_ := set $spec "securityContext" (include "asya-actor.securityContextOverlay" (dict "defaults" $a.podSecurityContext "over" $spec.securityContext) | fromJson) }}
{{- if not (hasKey $spec "terminationGracePeriodSeconds") }}
{{- $_ := set $spec "terminationGracePeriodSeconds" ($a.terminationGracePeriodSeconds | int64) }}
{{- end }}
{{- $serviceAccount := include "asya-actor.serviceAccountName" . }}
{{- if and $serviceAccount (not $spec.serviceAccountName) }}
{{- $_ := set $spec "serviceAccountName" $serviceAccount }}
{{- end }}
{{- if not (hasKey $spec "automountServiceAccountToken") }}
{{- /* The runtime and the sidecar never call the Kubernetes API (IRSA uses a projected token of its own). */}}
{{- $_ := set $spec "automountServiceAccountToken" false }}
{{- end }}
{{- toJson (dict "spec" $spec "runtime" $runtime "otherContainers" $others) }}
{{- end }}

{{/*
The actor pod. Native sidecar: init containers are the copy, the user's, then
the runtime (restartable, so the sidecar starts once the runtime's startup
probe passes and stops before it); otherwise the runtime is the first
container. Input: dict "root" "actor". Output: YAML of the pod spec.
*/}}
{{- define "asya-actor.podSpec" -}}
{{- $base := include "asya-actor.basePodSpec" . | fromJson }}
{{- $spec := $base.spec }}
{{- $sidecar := include "asya-actor.sidecarContainer" . | fromYaml }}
{{- if .actor.nativeSidecar }}
{{- $_ := set $spec "initContainers" (append $spec.initContainers $base.runtime) }}
{{- $_ := set $spec "containers" (append $base.otherContainers $sidecar) }}
{{- else }}
{{- $_ := set $spec "containers" (concat (list $base.runtime) $base.otherContainers (list $sidecar)) }}
{{- end }}
{{- toYaml $spec }}
{{- end }}

{{/*
The helm test pod: the same image, interpreter, env, volumes, init containers
and placement as the actor, one container that starts the runtime, checks it
and stops it, and no sidecar. Input: dict "root" "actor". Output: YAML.
*/}}
{{- define "asya-actor.testPodSpec" -}}
{{- $root := .root }}
{{- $a := .actor }}
{{- $base := include "asya-actor.basePodSpec" . | fromJson }}
{{- $spec := $base.spec }}
{{- $smokeTest := $base.runtime }}
{{- $_ := set $smokeTest "name" (include "asya-actor.testContainerName" $root) }}
{{- $_ := set $smokeTest "command" (list $a.workload.pythonExecutable "-c" ($root.Files.Get "files/smoke_test.py") (include "asya-actor.digits" $a.test.readyTimeoutSeconds) (include "asya-actor.runtimePath" $root)) }}
{{- range $field := list "startupProbe" "readinessProbe" "livenessProbe" "lifecycle" "ports" "restartPolicy" }}
{{- $_ := unset $smokeTest $field }}
{{- end }}
{{- with $a.test.resources }}
{{- $_ := set $smokeTest "resources" (deepCopy .) }}
{{- end }}
{{- $_ := set $spec "containers" (list $smokeTest) }}
{{- $_ := set $spec "restartPolicy" "Never" }}
{{- toYaml $spec }}
{{- end }}
