{{/*
Names, labels, images, security contexts and connection strings, in one place.
*/}}

{{- define "kubetrader.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: <release>-kubetrader, or the release name when it holds the chart name. */}}
{{- define "kubetrader.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's objects: <fullname>-<component>. Call with (list $ "component"). */}}
{{- define "kubetrader.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "kubetrader.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetrader.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of a component. Call with (list $ "component"). */}}
{{- define "kubetrader.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "kubetrader.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of a component. part-of=kubetrader is what the NetworkPolicies admit
(the operator puts it on the Jobs it creates, too). Call with (list $ "component"). */}}
{{- define "kubetrader.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "kubetrader.chart" $root }}
{{ include "kubetrader.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: kubetrader
{{- end }}

{{/* A kubetrader image: <registry>/<repository>:<tag>. Call with (list $ "engine"). */}}
{{- define "kubetrader.image" -}}
{{- $root := index . 0 }}
{{- $images := $root.Values.images }}
{{- printf "%s/%s:%s" $images.registry (index $images (index . 1)) $images.tag }}
{{- end }}

{{/*
A third-party image (redis, postgresql): repository:tag@digest, or repository:tag with no digest.
With both, the runtime pulls the digest and the tag only documents it.
*/}}
{{- define "kubetrader.externalImage" -}}
{{- if .digest }}{{ printf "%s:%s@%s" .repository .tag .digest }}{{ else }}{{ printf "%s:%s" .repository .tag }}{{ end }}
{{- end }}

{{/*
Pod template metadata of a component: the chart's labels (which always win), then the component's
podLabels, then global.podLabels; annotations likewise, after the template's own (checksums).
Call with (list $ "component" $componentValues) or (list $ "component" $componentValues $annotations).
*/}}
{{- define "kubetrader.podMetadata" -}}
{{- $root := index . 0 }}
{{- $c := index . 2 | default dict }}
{{- $own := dict }}
{{- if gt (len .) 3 }}{{ $own = index . 3 }}{{ end }}
{{- $labels := merge (include "kubetrader.labels" (list $root (index . 1)) | fromYaml) ($c.podLabels | default dict) ($root.Values.global.podLabels | default dict) }}
{{- $annotations := merge (deepCopy $own) ($c.podAnnotations | default dict) ($root.Values.global.podAnnotations | default dict) }}
labels:
  {{- toYaml $labels | nindent 2 }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Scheduling of a component's pods, in the pod spec: image pull Secrets (images.pullSecrets plus the
component's), nodeSelector (the component's keys over global's), tolerations (global's plus the
component's), affinity and topologySpreadConstraints (the component's, else global's; a constraint
without labelSelector gets this component's selector labels), priorityClassName.
One helper for every workload, so a knob never works on one pod and not the next.
Call with (list $ "component" $componentValues); $componentValues may be an empty dict.
*/}}
{{- define "kubetrader.podScheduling" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $c := index . 2 | default dict }}
{{- $g := $root.Values.global }}
{{- with concat ($root.Values.images.pullSecrets | default list) ($c.imagePullSecrets | default list) | uniq }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with merge (dict) ($c.nodeSelector | default dict) ($g.nodeSelector | default dict) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with concat ($g.tolerations | default list) ($c.tolerations | default list) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity | default $g.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.topologySpreadConstraints | default $g.topologySpreadConstraints }}
{{- $selector := dict "matchLabels" (include "kubetrader.selectorLabels" (list $root $component) | fromYaml) }}
topologySpreadConstraints:
  {{- range . }}
  {{- $constraint := deepCopy . }}
  {{- if not (hasKey $constraint "labelSelector") }}{{ $_ := set $constraint "labelSelector" $selector }}{{ end }}
  - {{- toYaml $constraint | nindent 4 }}
  {{- end }}
{{- end }}
{{- with $c.priorityClassName | default $g.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The scheduling of the pods the operator creates (operator.childPods over global, merged as
kubetrader.podScheduling merges a component's keys), as JSON for KUBETRADER_OPERATOR_POD_SCHEDULING
(kubetrader_operator.scheduling.PodScheduling reads it; topologySpreadConstraints are not passed:
their selector would have to name each child's own labels).
*/}}
{{- define "kubetrader.childPodSchedulingJson" -}}
{{- $g := .Values.global }}
{{- $c := .Values.operator.childPods | default dict }}
{{- toJson (dict
  "nodeSelector" (merge (dict) ($c.nodeSelector | default dict) ($g.nodeSelector | default dict))
  "tolerations" (concat ($g.tolerations | default list) ($c.tolerations | default list) | default list)
  "affinity" ($c.affinity | default $g.affinity | default dict)
  "priorityClassName" ($c.priorityClassName | default $g.priorityClassName | default "")
  "imagePullSecrets" (concat (.Values.images.pullSecrets | default list) ($c.imagePullSecrets | default list) | uniq | default list)
  "podLabels" (merge (dict) ($c.podLabels | default dict) ($g.podLabels | default dict))
  "podAnnotations" (merge (dict) ($c.podAnnotations | default dict) ($g.podAnnotations | default dict))) }}
{{- end }}

{{/*
The metrics scraper's NetworkPolicy peer (monitoring.scrapeFrom) as YAML, or nothing when unset.
Both selectors or neither: one alone would admit every namespace (or every pod of it).
*/}}
{{- define "kubetrader.scrapePeer" -}}
{{- $s := .Values.monitoring.scrapeFrom | default dict }}
{{- if $s }}
{{- if not (and $s.namespaceSelector $s.podSelector) }}
{{- fail "monitoring.scrapeFrom: set both namespaceSelector and podSelector (non-empty), or neither: an empty selector admits everything" }}
{{- end }}
{{- toYaml (dict "namespaceSelector" $s.namespaceSelector "podSelector" $s.podSelector) }}
{{- end }}
{{- end }}

{{/*
The Service of a web component (api, dashboard, mlflow): type, annotations, NodePort,
loadBalancerSourceRanges. Call with (list $ "component" $componentValues port).
*/}}
{{- define "kubetrader.webService" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $s := (index . 2).service }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "kubetrader.componentName" (list $root $component) }}
  labels:
    {{- include "kubetrader.labels" (list $root $component) | nindent 4 }}
  {{- with $s.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $s.type }}
  {{- if and (eq $s.type "LoadBalancer") $s.loadBalancerSourceRanges }}
  loadBalancerSourceRanges:
    {{- toYaml $s.loadBalancerSourceRanges | nindent 4 }}
  {{- end }}
  selector:
    {{- include "kubetrader.selectorLabels" (list $root $component) | nindent 4 }}
  ports:
    - name: http
      port: {{ index . 3 }}
      targetPort: http
      {{- if eq $s.type "NodePort" }}
      nodePort: {{ $s.nodePort }}
      {{- end }}
{{- end }}

{{/* The web components that get a Service, an optional Ingress and HTTPRoute, and a PDB: name -> port. */}}
{{- define "kubetrader.webComponents" -}}
{{- $web := dict "api" 8000 "dashboard" 8501 }}
{{- if .Values.mlflow.enabled }}{{ $_ := set $web "mlflow" 5000 }}{{ end }}
{{- toJson $web }}
{{- end }}

{{/* Pod securityContext meeting Pod Security "restricted". Call with a uid. */}}
{{- define "kubetrader.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container securityContext meeting Pod Security "restricted", read-only root filesystem. */}}
{{- define "kubetrader.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The namespaces the operator watches (a list; the release namespace when none are given). */}}
{{- define "kubetrader.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces }}
{{- toJson (uniq .Values.operator.watchNamespaces) }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{- define "kubetrader.engineServiceAccount" -}}
{{- include "kubetrader.componentName" (list . "engine") }}
{{- end }}

{{- define "kubetrader.dataClaim" -}}
{{- default (include "kubetrader.componentName" (list . "data")) .Values.data.existingClaim }}
{{- end }}

{{/* The API token's Secret: auth.apiToken.existingSecret, api.existingTokenSecret, or the generated one. */}}
{{- define "kubetrader.apiTokenSecret" -}}
{{- coalesce .Values.auth.apiToken.existingSecret .Values.api.existingTokenSecret (include "kubetrader.componentName" (list . "api-token")) }}
{{- end }}

{{- define "kubetrader.apiTokenKey" -}}
{{- .Values.auth.apiToken.key }}
{{- end }}

{{/* The env entry KUBETRADER_API_TOKEN from its Secret. */}}
{{- define "kubetrader.apiTokenEnv" -}}
- name: KUBETRADER_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "kubetrader.apiTokenSecret" . }}
      key: {{ include "kubetrader.apiTokenKey" . }}
{{- end }}

{{/* Redis: is a password in use? "true" or "". The bundled Redis has one unless auth.redis.enabled
is false; an external one when auth.redis.existingSecret names its Secret. */}}
{{- define "kubetrader.redisAuth" -}}
{{- if and .Values.auth.redis.enabled (or .Values.redis.enabled .Values.auth.redis.existingSecret) }}true{{ end }}
{{- end }}

{{- define "kubetrader.redisSecret" -}}
{{- default (include "kubetrader.componentName" (list . "redis")) .Values.auth.redis.existingSecret }}
{{- end }}

{{/* The env entry REDIS_PASSWORD from its Secret (nothing without a password); the URL below says
$(REDIS_PASSWORD), which Kubernetes substitutes in the pod, so no manifest holds the password. */}}
{{- define "kubetrader.redisPasswordEnv" -}}
{{- if include "kubetrader.redisAuth" . }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "kubetrader.redisSecret" . }}
      key: {{ .Values.auth.redis.key }}
{{- end }}
{{- end }}

{{/* Finnhub's API key Secret (existing, or the chart's from auth.finnhub.apiKey); empty: none. */}}
{{- define "kubetrader.finnhubSecret" -}}
{{- if .Values.auth.finnhub.existingSecret }}
{{- .Values.auth.finnhub.existingSecret }}
{{- else if .Values.auth.finnhub.apiKey }}
{{- include "kubetrader.componentName" (list . "finnhub") }}
{{- end }}
{{- end }}

{{/* Does a URL carry credentials (user-info, or a secret query parameter as kubetrader.redaction
names them)? "true" or "". Values are no place for them: they end up as plain env values. */}}
{{- define "kubetrader.urlHasCredentials" -}}
{{- if or (regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@" .) (regexMatch "(?i)[?&][^=&]*(password|passwd|pwd|token|key|secret|signature|sig|credential|auth)[^=&]*=" .) }}true{{ end }}
{{- end }}

{{/* MLflow authentication: "true" or "". The bundled server has it unless auth.mlflow.enabled is
false; an external one when auth.mlflow.existingSecret names its user's Secret. */}}
{{- define "kubetrader.mlflowAuth" -}}
{{- if and .Values.auth.mlflow.enabled (or .Values.mlflow.enabled .Values.auth.mlflow.existingSecret) }}true{{ end }}
{{- end }}

{{- define "kubetrader.mlflowAuthSecret" -}}
{{- default (include "kubetrader.componentName" (list . "mlflow-auth")) .Values.auth.mlflow.existingSecret }}
{{- end }}

{{/* MLflow's client variables for basic auth (read by every MLflow client: worker, API, Jobs); the
user name from existingSecret, or the plain auth.mlflow.username (a name, not a secret). */}}
{{- define "kubetrader.mlflowAuthEnv" -}}
{{- if include "kubetrader.mlflowAuth" . }}
- name: MLFLOW_TRACKING_USERNAME
{{- if .Values.auth.mlflow.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ include "kubetrader.mlflowAuthSecret" . }}
      key: {{ .Values.auth.mlflow.usernameKey }}
{{- else }}
  value: {{ .Values.auth.mlflow.username | quote }}
{{- end }}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "kubetrader.mlflowAuthSecret" . }}
      key: {{ .Values.auth.mlflow.passwordKey }}
{{- end }}
{{- end }}

{{/* The bundled MLflow server's CSRF key: in existingSecret, or a generated Secret of its own. */}}
{{- define "kubetrader.mlflowServerSecret" -}}
{{- default (include "kubetrader.componentName" (list . "mlflow-server")) .Values.auth.mlflow.existingSecret }}
{{- end }}

{{- define "kubetrader.studySigningSecret" -}}
{{- default (include "kubetrader.componentName" (list . "study-signing")) .Values.auth.studySigning.existingSecret }}
{{- end }}

{{/* The operator's runner-token key (live trading): one generated Secret in the release namespace. */}}
{{- define "kubetrader.runnerKeySecret" -}}
{{- include "kubetrader.componentName" (list . "operator-runner-key") }}
{{- end }}

{{/*
The Secrets the chart generates (random, kept): a JSON list of {name, namespace, key, length,
component}. secrets.yaml renders them with lookup; with auth.generateWithHook the hook Job
creates them instead. The Redis password is needed in every namespace the operator's Jobs run in
(a secretKeyRef reads the pod's own namespace), with the same value.
*/}}
{{- define "kubetrader.generatedSecrets" -}}
{{- $out := list }}
{{- if and .Values.postgresql.enabled (not .Values.auth.postgresql.existingSecret) }}
{{- $out = append $out (dict "name" (include "kubetrader.componentName" (list . "postgresql")) "namespace" .Release.Namespace "key" .Values.auth.postgresql.key "length" 32 "component" "postgresql") }}
{{- end }}
{{- if not (or .Values.auth.apiToken.existingSecret .Values.api.existingTokenSecret) }}
{{- $out = append $out (dict "name" (include "kubetrader.apiTokenSecret" .) "namespace" .Release.Namespace "key" .Values.auth.apiToken.key "length" 48 "component" "api") }}
{{- end }}
{{- if not .Values.auth.session.existingSecret }}
{{- $out = append $out (dict "name" (include "kubetrader.sessionSecret" .) "namespace" .Release.Namespace "key" .Values.auth.session.key "length" 48 "component" "api") }}
{{- end }}
{{- if .Values.live.enabled }}
{{- /* the key each live runner's bearer token is derived from (operator env, never read over the API) */}}
{{- $out = append $out (dict "name" (include "kubetrader.runnerKeySecret" .) "namespace" .Release.Namespace "key" "key" "length" 48 "component" "operator") }}
{{- end }}
{{- $namespaces := list .Release.Namespace }}
{{- if not .Values.operator.watchAllNamespaces }}
{{- $namespaces = concat $namespaces (include "kubetrader.watchNamespaces" . | fromJsonArray) | uniq }}
{{- end }}
{{- if and (include "kubetrader.redisAuth" .) (not .Values.auth.redis.existingSecret) }}
{{- range $namespaces }}
{{- $out = append $out (dict "name" (include "kubetrader.redisSecret" $) "namespace" . "key" $.Values.auth.redis.key "length" 32 "component" "redis") }}
{{- end }}
{{- end }}
{{- if and (include "kubetrader.mlflowAuth" .) (not .Values.auth.mlflow.existingSecret) }}
{{- range $namespaces }}
{{- $out = append $out (dict "name" (include "kubetrader.mlflowAuthSecret" $) "namespace" . "key" $.Values.auth.mlflow.passwordKey "length" 32 "component" "mlflow") }}
{{- end }}
{{- if .Values.mlflow.enabled }}
{{- $out = append $out (dict "name" (include "kubetrader.mlflowServerSecret" .) "namespace" .Release.Namespace "key" .Values.auth.mlflow.serverSecretKey "length" 48 "component" "mlflow") }}
{{- end }}
{{- end }}
{{- if not .Values.auth.studySigning.existingSecret }}
{{- range $namespaces }}
{{- $out = append $out (dict "name" (include "kubetrader.studySigningSecret" $) "namespace" . "key" $.Values.auth.studySigning.key "length" 48 "component" "operator") }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Redis: the bundled server's URL, or the external one (required when the bundled one is off). */}}
{{- define "kubetrader.redisUrl" -}}
{{- $url := "" }}
{{- if .Values.redis.enabled }}
{{- $url = printf "redis://%s.%s.svc:6379/0" (include "kubetrader.componentName" (list . "redis")) .Release.Namespace }}
{{- else }}
{{- $url = required "redis.external.url is required when redis.enabled is false" .Values.redis.external.url }}
{{- end }}
{{- if include "kubetrader.urlHasCredentials" $url }}
{{- fail "redis.external.url holds credentials: drop them, auth.redis.existingSecret supplies the password" }}
{{- end }}
{{- if include "kubetrader.redisAuth" . }}
{{- $url = regexReplaceAll "^(rediss?://)" $url "${1}:$(REDIS_PASSWORD)@" }}
{{- end }}
{{- $url }}
{{- end }}

{{/* PostgreSQL: host, port, user, password Secret and key. */}}
{{- define "kubetrader.postgresHost" -}}
{{- if .Values.postgresql.enabled }}
{{- printf "%s.%s.svc" (include "kubetrader.componentName" (list . "postgresql")) .Release.Namespace }}
{{- else }}
{{- required "postgresql.external.host is required when postgresql.enabled is false" .Values.postgresql.external.host }}
{{- end }}
{{- end }}

{{- define "kubetrader.postgresPort" -}}
{{- if .Values.postgresql.enabled }}5432{{ else }}{{ .Values.postgresql.external.port }}{{ end }}
{{- end }}

{{- define "kubetrader.postgresUser" -}}
{{- if .Values.postgresql.enabled }}
{{- .Values.postgresql.username }}
{{- else }}
{{- required "postgresql.external.username is required when postgresql.enabled is false" .Values.postgresql.external.username }}
{{- end }}
{{- end }}

{{- define "kubetrader.postgresSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- default (include "kubetrader.componentName" (list . "postgresql")) .Values.auth.postgresql.existingSecret }}
{{- else }}
{{- required "postgresql.external.existingSecret is required when postgresql.enabled is false" .Values.postgresql.external.existingSecret }}
{{- end }}
{{- end }}

{{- define "kubetrader.postgresPasswordKey" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.auth.postgresql.key }}{{ else }}{{ .Values.postgresql.external.passwordKey }}{{ end }}
{{- end }}

{{/* Is a PostgreSQL server configured at all (bundled or external)? "true" or "". */}}
{{- define "kubetrader.postgresConfigured" -}}
{{- if or .Values.postgresql.enabled .Values.postgresql.external.host }}true{{ end }}
{{- end }}

{{/* The env entry POSTGRES_PASSWORD from the Secret; URLs below refer to it as $(POSTGRES_PASSWORD). */}}
{{- define "kubetrader.postgresPasswordEnv" -}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "kubetrader.postgresSecret" . }}
      key: {{ include "kubetrader.postgresPasswordKey" . }}
{{- end }}

{{/* SQLAlchemy URL of one database; needs POSTGRES_PASSWORD earlier in the env list. Call with (list $ "mlflow"). */}}
{{- define "kubetrader.databaseUrl" -}}
{{- $root := index . 0 }}
{{- $database := index $root.Values.postgresql.databases (index . 1) }}
{{- printf "postgresql+psycopg2://%s:$(POSTGRES_PASSWORD)@%s:%s/%s" (include "kubetrader.postgresUser" $root) (include "kubetrader.postgresHost" $root) (include "kubetrader.postgresPort" $root) $database }}
{{- end }}

{{/* MLflow tracking URI: the bundled server's Service, or the external one; empty when there is none. */}}
{{- define "kubetrader.mlflowTrackingUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s.%s.svc:5000" (include "kubetrader.componentName" (list . "mlflow")) .Release.Namespace }}
{{- else }}
{{- if include "kubetrader.urlHasCredentials" .Values.mlflow.external.trackingUri }}
{{- fail (printf "mlflow.external.trackingUri holds credentials: drop them, auth.mlflow.existingSecret supplies the user and password") }}
{{- end }}
{{- .Values.mlflow.external.trackingUri }}
{{- end }}
{{- end }}

{{/* Where a person opens MLflow's UI (the kind NodePort, or the external server). */}}
{{- define "kubetrader.mlflowUiUrl" -}}
{{- if .Values.mlflow.enabled }}
{{- if eq .Values.mlflow.service.type "NodePort" }}
{{- printf "http://localhost:%v" .Values.mlflow.service.nodePort }}
{{- else }}
{{- include "kubetrader.mlflowTrackingUri" . }}
{{- end }}
{{- else }}
{{- default .Values.mlflow.external.trackingUri .Values.mlflow.external.uiUrl }}
{{- end }}
{{- end }}

{{/* The in-cluster URL of the API. */}}
{{- define "kubetrader.apiUrl" -}}
{{- printf "http://%s.%s.svc:8000" (include "kubetrader.componentName" (list . "api")) .Release.Namespace }}
{{- end }}

{{/* Look up a key of an existing Secret (kept across upgrades), or generate a new random value.
Under `helm template` (no cluster) lookup finds nothing: a new value every render (see auth.generateWithHook).
Call with (list $ "secret-name" "key" length). */}}
{{- define "kubetrader.keptRandom" -}}
{{- $root := index . 0 }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) }}
{{- if and $existing (hasKey ($existing.data | default dict) (index . 2)) }}
{{- index $existing.data (index . 2) | b64dec }}
{{- else }}
{{- randAlphaNum (index . 3) }}
{{- end }}
{{- end }}

{{/* ---- NetworkPolicy peers (templates/networkpolicies.yaml, and the operator's live policies) ---- */}}

{{/* Labels the operator puts on every pod it creates (kubetrader_operator.labels: MANAGED_BY, PART_OF). */}}
{{- define "kubetrader.operatorChildLabels" -}}
app.kubernetes.io/managed-by: kubetrader-operator
app.kubernetes.io/part-of: kubetrader
{{- end }}

{{/* The live runner pods the operator creates (kubetrader_operator/live/builders.py `labels`). */}}
{{- define "kubetrader.liveRunnerLabels" -}}
{{ include "kubetrader.operatorChildLabels" . }}
app.kubernetes.io/component: runner
{{- end }}

{{/* A component's pods in the release namespace, selected by namespace NAME (a label any other
namespace cannot carry) and the component's selector labels. Call with (list $ "component"). */}}
{{- define "kubetrader.componentPeer" -}}
{{- $root := index . 0 -}}
namespaceSelector:
  matchLabels:
    kubernetes.io/metadata.name: {{ $root.Release.Namespace }}
podSelector:
  matchLabels:
    {{- include "kubetrader.selectorLabels" . | nindent 4 }}
{{- end }}

{{/* The same peer as JSON for the operator's live settings: {"namespace": ..., "labels": {...}}. */}}
{{- define "kubetrader.componentPeerJson" -}}
{{- $root := index . 0 -}}
{{- toJson (dict "namespace" $root.Release.Namespace "labels" (include "kubetrader.selectorLabels" . | fromYaml)) }}
{{- end }}

{{/* The pods the operator creates (Backtest and study Jobs) in the namespaces it watches. With
watchAllNamespaces that is any namespace: there only the labels tell them apart. */}}
{{- define "kubetrader.operatorChildPeer" -}}
{{- if .Values.operator.watchAllNamespaces -}}
namespaceSelector: {}
{{- else -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: In
      values: {{ include "kubetrader.watchNamespaces" . }}
{{- end }}
podSelector:
  matchLabels:
    {{- include "kubetrader.operatorChildLabels" . | nindent 4 }}
{{- end }}

{{/* Does the chart run the MLflow sync loop (mlflow.sync, templates/mlflow-sync.yaml)? "true" or "":
only with an MLflow to log to. The operator then passes `--tracking-mode later` to Backtest Jobs in
the namespaces of kubetrader.mlflowSyncNamespaces. */}}
{{- define "kubetrader.mlflowSync" -}}
{{- if and .Values.mlflow.sync.enabled (include "kubetrader.mlflowTrackingUri" .) }}true{{ end }}
{{- end }}

{{/* Where the sync loop runs on the data PVC: the release namespace (a JSON list), the one namespace
whose data PVC it mounts. Backtests in other watched namespaces use their namespace's own PVC of the
same name, which no sync reads: their Jobs keep logging before they exit. */}}
{{- define "kubetrader.mlflowSyncNamespaces" -}}
{{- toJson (list .Release.Namespace) }}
{{- end }}
