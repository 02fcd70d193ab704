{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "waybill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: <release>-<chart>, or the release name alone when it
already contains the chart name.
*/}}
{{- define "waybill.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "waybill.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (a Deployment's selector
is immutable), so nothing version-dependent goes here.
*/}}
{{- define "waybill.selectorLabels" -}}
app.kubernetes.io/name: {{ include "waybill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that select the pods (Deployment selector, Service, PodMonitor). In
sidecar mode workload.selectorLabels replaces them, so that an existing
Deployment, whose selector is immutable, can be taken over by the chart.
*/}}
{{- define "waybill.podSelectorLabels" -}}
{{- if and (eq .Values.mode "sidecar") .Values.workload.selectorLabels }}
{{- toYaml .Values.workload.selectorLabels }}
{{- else }}
{{- include "waybill.selectorLabels" . }}
{{- end }}
{{- end }}

{{/*
Standard labels on every resource.
*/}}
{{- define "waybill.labels" -}}
helm.sh/chart: {{ include "waybill.chart" . }}
{{ include "waybill.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: waybill
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of the Deployment and Service: the workload's name in sidecar mode.
*/}}
{{- define "waybill.workloadName" -}}
{{- if and (eq .Values.mode "sidecar") .Values.workload.name }}
{{- .Values.workload.name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "waybill.fullname" . }}
{{- end }}
{{- end }}

{{- define "waybill.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "waybill.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The waybill image reference: repository@digest, or repository:tag with the
tag defaulting to the chart's appVersion.
*/}}
{{- define "waybill.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "waybill.configMapName" -}}
{{- if .Values.existingConfigMap }}
{{- .Values.existingConfigMap }}
{{- else }}
{{- printf "%s-config" (include "waybill.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "waybill.configKey" -}}
{{- if .Values.existingConfigMap }}{{ .Values.existingConfigMapKey }}{{ else }}waybill.yaml{{ end }}
{{- end }}

{{/*
Where the Redis outage spill lives (an emptyDir, see deployment.yaml).
*/}}
{{- define "waybill.spillPath" -}}
/var/lib/waybill/spill
{{- end }}

{{/*
Whether the pod carries the Redis outage spill's volume.
*/}}
{{- define "waybill.spill" -}}
{{- if and (eq .Values.mode "sidecar") .Values.redis.enabled .Values.redis.spill.enabled }}true{{- end }}
{{- end }}

{{- define "waybill.adminBind" -}}
{{- printf "0.0.0.0:%d" (int .Values.sidecar.adminPort) }}
{{- end }}

{{/*
The routes file as rendered into the ConfigMap: the inline `config` with the
admin surface bound on all interfaces (probes come from the kubelet, not
from loopback) and, in Redis mode, the shared state backend.
*/}}
{{- define "waybill.renderedConfig" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $admin := merge (dict "bind" (include "waybill.adminBind" .)) (default (dict) $cfg.admin) }}
{{- $_ := set $cfg "admin" $admin }}
{{- if .Values.redis.enabled }}
{{- $scheme := ternary "rediss" "redis" .Values.redis.tls }}
{{- $redis := dict "url" (printf "%s://%s" $scheme .Values.redis.address) }}
{{- if .Values.redis.namespace }}
{{- $_ := set $redis "namespace" .Values.redis.namespace }}
{{- end }}
{{- if .Values.redis.cluster }}
{{- $_ := set $redis "cluster" true }}
{{- end }}
{{- if .Values.redis.spill.enabled }}
{{- $spill := dict "path" (include "waybill.spillPath" .) }}
{{- if gt (int .Values.redis.spill.maxEntries) 0 }}
{{- $_ := set $spill "max_entries" (int .Values.redis.spill.maxEntries) }}
{{- end }}
{{- $_ := set $redis "spill" $spill }}
{{- end }}
{{- $state := merge (dict "backend" "redis" "redis" $redis) (default (dict) $cfg.state) }}
{{- $_ := set $cfg "state" $state }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The pod's terminationGracePeriodSeconds: the explicit value, or the whole
shutdown budget (app preStop + app shutdown + waybill preStop + drain +
margin). Native sidecars stop after the app, so the budget is a sum.
*/}}
{{- define "waybill.terminationGracePeriodSeconds" -}}
{{- $s := .Values.sidecar }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- $app := 0 }}
{{- if eq .Values.mode "sidecar" }}
{{- $app = add .Values.workload.preStopSleepSeconds .Values.workload.shutdownSeconds }}
{{- end }}
{{- add $app $s.preStopSleepSeconds $s.drainTimeoutSeconds 5 }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Checks the schema cannot express. Each failure says what to change.
*/}}
{{/*
The waybill container's TOKIO_WORKER_THREADS: sidecar.workerThreads when set
(0: none, waybill then uses every CPU it may), else the CPU limit rounded up
(500m -> 1, 1.5 -> 2), else 2. A sidecar with no CPU limit must not start one
worker per node CPU.
*/}}
{{- define "waybill.workerThreads" -}}
{{- $s := .Values.sidecar }}
{{- if not (kindIs "invalid" $s.workerThreads) }}
{{- int $s.workerThreads }}
{{- else }}
{{- $cpu := toString (dig "limits" "cpu" "" (default dict $s.resources)) }}
{{- if not $cpu }}
{{- 2 }}
{{- else if hasSuffix "m" $cpu }}
{{- max 1 (int (ceil (divf (float64 (trimSuffix "m" $cpu)) 1000))) }}
{{- else }}
{{- max 1 (int (ceil (float64 $cpu))) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "waybill.validate" -}}
{{- $v := .Values }}
{{- $kube := .Capabilities.KubeVersion.Version }}
{{- $needed := add $v.sidecar.preStopSleepSeconds $v.sidecar.drainTimeoutSeconds 1 }}
{{- if and (not (kindIs "invalid" $v.terminationGracePeriodSeconds)) (lt (int $v.terminationGracePeriodSeconds) (int $needed)) }}
{{- fail (printf "terminationGracePeriodSeconds=%d is shorter than waybill's shutdown (sidecar.preStopSleepSeconds + sidecar.drainTimeoutSeconds + 1 = %d): the kubelet would kill it mid-drain. Raise it, or leave it null to compute it." (int $v.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- if and (gt (int $v.sidecar.preStopSleepSeconds) 0) (semverCompare "<1.30.0-0" $kube) }}
{{- fail (printf "sidecar.preStopSleepSeconds uses the preStop sleep action, which needs Kubernetes 1.30+ (this cluster: %s). Set sidecar.preStopSleepSeconds=0 and workload.preStopSleepSeconds=0." $kube) }}
{{- end }}
{{- if eq $v.mode "sidecar" }}
{{- if not $v.workload.image.repository }}
{{- fail "mode=sidecar needs workload.image.repository: the image of the application waybill sits beside." }}
{{- end }}
{{- if and (eq $v.sidecar.mode "native") (semverCompare "<1.29.0-0" $kube) }}
{{- fail (printf "sidecar.mode=native needs Kubernetes 1.29+ (this cluster: %s). Use sidecar.mode=classic." $kube) }}
{{- end }}
{{- if and (gt (int $v.workload.preStopSleepSeconds) 0) (semverCompare "<1.30.0-0" $kube) }}
{{- fail (printf "workload.preStopSleepSeconds uses the preStop sleep action, which needs Kubernetes 1.30+ (this cluster: %s). Set it to 0." $kube) }}
{{- end }}
{{- if eq (int $v.sidecar.listenerPort) (int $v.workload.containerPort) }}
{{- fail "sidecar.listenerPort and workload.containerPort are equal: waybill and the app share the pod's network namespace and cannot bind the same port." }}
{{- end }}
{{- if not $v.existingConfigMap }}
{{- if not $v.config.listeners }}
{{- fail "config.listeners is empty: give the routes file inline in `config`, or name a ConfigMap in existingConfigMap." }}
{{- end }}
{{- $suffix := printf ":%d" (int $v.sidecar.listenerPort) }}
{{- $found := false }}
{{- range $v.config.listeners }}
{{- if and (kindIs "map" .) (hasSuffix $suffix (toString (default "" .bind))) }}
{{- $found = true }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- fail (printf "no listener in config.listeners binds port %d (sidecar.listenerPort), which the Service targets. Bind one listener to 0.0.0.0:%d or change sidecar.listenerPort." (int $v.sidecar.listenerPort) (int $v.sidecar.listenerPort)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.serviceMonitor.enabled (not (and $v.service.enabled $v.service.exposeAdmin)) }}
{{- fail "serviceMonitor.enabled needs service.enabled and service.exposeAdmin (it scrapes the Service's admin port); use podMonitor.enabled instead to scrape pods directly." }}
{{- end }}
{{- end }}

{{/*
The waybill container spec, shared by the demo Deployment and both sidecar
modes. Call with (dict "root" $ "native" bool).
  native: render `restartPolicy: Always` (a native sidecar in initContainers).
*/}}
{{- define "waybill.container" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $s := $v.sidecar }}
{{- $sidecarMode := eq $v.mode "sidecar" -}}
- name: waybill
  image: {{ include "waybill.image" $root | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args:
    {{- if $sidecarMode }}
    - run
    - --config
    - /etc/waybill/{{ include "waybill.configKey" $root }}
    {{- else }}
    - demo
    - --keep-running
    {{- if not (kindIs "invalid" $v.demo.orders) }}
    - --orders
    - {{ $v.demo.orders | int | quote }}
    {{- end }}
    {{- if not (kindIs "invalid" $v.demo.speed) }}
    - --speed
    - {{ $v.demo.speed | toString | quote }}
    {{- end }}
    {{- end }}
    - --admin
    - {{ include "waybill.adminBind" $root | quote }}
    {{- range $s.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    - name: waybill-admin
      containerPort: {{ $s.adminPort }}
      protocol: TCP
    {{- if $sidecarMode }}
    - name: waybill-http
      containerPort: {{ $s.listenerPort }}
      protocol: TCP
    {{- end }}
    {{- with $s.extraPorts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    - name: K8S_POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: K8S_NAMESPACE_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: K8S_NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    - name: OTEL_SERVICE_NAME
      value: {{ default (include "waybill.workloadName" $root) $v.otel.serviceName | quote }}
    - name: OTEL_RESOURCE_ATTRIBUTES
      value: {{ include "waybill.resourceAttributes" $root | quote }}
    {{- with $v.otel.endpoint }}
    - name: OTEL_EXPORTER_OTLP_ENDPOINT
      value: {{ . | quote }}
    {{- end }}
    - name: WAYBILL_DRAIN_TIMEOUT
      value: {{ printf "%ds" (int $s.drainTimeoutSeconds) | quote }}
    {{- $workers := include "waybill.workerThreads" $root }}
    {{- range $s.extraEnv }}
    {{- if eq (toString .name) "TOKIO_WORKER_THREADS" }}{{ $workers = "0" }}{{ end }}
    {{- end }}
    {{- if ne $workers "0" }}
    - name: TOKIO_WORKER_THREADS
      value: {{ $workers | quote }}
    {{- end }}
    {{- if $v.redis.enabled }}
    - name: WAYBILL_REDIS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $v.redis.existingSecret | quote }}
          key: {{ $v.redis.existingSecretPasswordKey | quote }}
    {{- end }}
    {{- with $s.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if $s.startupProbe.enabled }}
  startupProbe:
    httpGet:
      path: /healthz
      port: waybill-admin
    periodSeconds: {{ $s.startupProbe.periodSeconds }}
    timeoutSeconds: {{ $s.startupProbe.timeoutSeconds }}
    failureThreshold: {{ $s.startupProbe.failureThreshold }}
  {{- end }}
  {{- if $s.livenessProbe.enabled }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: waybill-admin
    periodSeconds: {{ $s.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ $s.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ $s.livenessProbe.failureThreshold }}
  {{- end }}
  {{- if $s.readinessProbe.enabled }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: waybill-admin
    periodSeconds: {{ $s.readinessProbe.periodSeconds }}
    timeoutSeconds: {{ $s.readinessProbe.timeoutSeconds }}
    failureThreshold: {{ $s.readinessProbe.failureThreshold }}
  {{- end }}
  {{- if gt (int $s.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ $s.preStopSleepSeconds }}
  {{- end }}
  {{- with $s.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: waybill-tmp
      mountPath: /tmp
    {{- if $sidecarMode }}
    - name: waybill-config
      mountPath: /etc/waybill
      readOnly: true
    {{- end }}
    {{- if include "waybill.spill" $root }}
    - name: waybill-spill
      mountPath: {{ include "waybill.spillPath" $root }}
    {{- end }}
    {{- with $s.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
OTEL_RESOURCE_ATTRIBUTES: pod and namespace from the downward API (expanded
by the kubelet from the K8S_* variables defined before it), then extras.
*/}}
{{- define "waybill.resourceAttributes" -}}
{{- $attrs := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" "k8s.node.name=$(K8S_NODE_NAME)" }}
{{- range $k, $val := .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k (toString $val)) }}
{{- end }}
{{- join "," $attrs }}
{{- end }}

{{/*
Pod spec fields shared by both modes, after the containers.
*/}}
{{- define "waybill.podCommon" -}}
serviceAccountName: {{ include "waybill.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
terminationGracePeriodSeconds: {{ include "waybill.terminationGracePeriodSeconds" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
