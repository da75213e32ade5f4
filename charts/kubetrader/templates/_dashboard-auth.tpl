{{/*
Signing people in to the dashboard and the API (kubetrader_dashboard.auth; README "Dashboard").
Values under auth.users, auth.session and auth.oidc. Call each with the root context.
*/}}
{{- define "kubetrader.dashboardAuth" -}}
{{- toJson (mergeOverwrite (dict
  "users" (dict "existingSecret" "" "key" "users.yaml")
  "session" (dict "existingSecret" "" "key" "secret" "ttlSeconds" 28800)
  "oidc" (dict "enabled" false "issuerUrl" "" "clientId" "" "existingSecret" "" "clientSecretKey" "client-secret"
    "cookieSecretKey" "cookie-secret" "usernameClaim" "email" "groupsClaim" "groups" "viewerGroups" (list)
    "researcherGroups" (list) "traderGroups" (list) "defaultRole" "")
  ) (pick (.Values.auth | default dict) "users" "session" "oidc" | deepCopy)) }}
{{- end }}

{{/* The Secret holding the built-in login's users file (optional: none, no built-in login). */}}
{{- define "kubetrader.usersSecret" -}}
{{- $a := include "kubetrader.dashboardAuth" . | fromJson }}
{{- default (include "kubetrader.componentName" (list . "dashboard-users")) $a.users.existingSecret }}
{{- end }}

{{/* The Secret holding the key that signs the built-in login's session tokens. */}}
{{- define "kubetrader.sessionSecret" -}}
{{- $a := include "kubetrader.dashboardAuth" . | fromJson }}
{{- default (include "kubetrader.componentName" (list . "dashboard-session")) $a.session.existingSecret }}
{{- end }}

{{/* The API container's sign-in settings (env entries). */}}
{{- define "kubetrader.dashboardAuthEnv" -}}
{{- $a := include "kubetrader.dashboardAuth" . | fromJson }}
- name: KUBETRADER_USERS_FILE
  value: /etc/kubetrader/users/{{ $a.users.key }}
- name: KUBETRADER_SESSION_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "kubetrader.sessionSecret" . }}
      key: {{ $a.session.key }}
- name: KUBETRADER_SESSION_TTL_SECONDS
  value: {{ $a.session.ttlSeconds | quote }}
{{- if $a.oidc.enabled }}
- name: KUBETRADER_OIDC_ISSUER
  value: {{ required "auth.oidc.issuerUrl is required with auth.oidc.enabled" $a.oidc.issuerUrl | quote }}
- name: KUBETRADER_OIDC_AUDIENCE
  value: {{ required "auth.oidc.clientId is required with auth.oidc.enabled" $a.oidc.clientId | quote }}
- name: KUBETRADER_OIDC_USERNAME_CLAIM
  value: {{ $a.oidc.usernameClaim | quote }}
- name: KUBETRADER_OIDC_GROUPS_CLAIM
  value: {{ $a.oidc.groupsClaim | quote }}
- name: KUBETRADER_OIDC_VIEWER_GROUPS
  value: {{ toJson $a.oidc.viewerGroups | quote }}
- name: KUBETRADER_OIDC_RESEARCHER_GROUPS
  value: {{ toJson $a.oidc.researcherGroups | quote }}
- name: KUBETRADER_OIDC_TRADER_GROUPS
  value: {{ toJson $a.oidc.traderGroups | quote }}
{{- with $a.oidc.defaultRole }}
- name: KUBETRADER_OIDC_DEFAULT_ROLE
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
