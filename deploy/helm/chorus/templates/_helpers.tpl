{{/*
Names. fullname is "<release>-chorus", or the release name alone when it
already contains the chart name; truncated to 52 characters so the longest
derived name (the Job, "-controller-<revision>") stays a valid label.
*/}}
{{- define "chorus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chorus.fullname" -}}
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

{{- define "chorus.agentName" -}}
{{- printf "%s-agent" (include "chorus.fullname" .) }}
{{- end }}

{{/* The headless Service: its name is the DNS subdomain of StatefulSet pods. */}}
{{- define "chorus.serviceName" -}}
{{- printf "%s-agents" (include "chorus.fullname" .) }}
{{- end }}

{{- define "chorus.planConfigMap" -}}
{{- default (printf "%s-plan" (include "chorus.fullname" .)) .Values.existingPlanConfigMap }}
{{- end }}

{{- define "chorus.resultsClaim" -}}
{{- default (printf "%s-results" (include "chorus.fullname" .)) .Values.results.persistence.existingClaim }}
{{- end }}

{{- define "chorus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "chorus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "chorus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component (agent, controller, results). */}}
{{- define "chorus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chorus.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Discovery mode of the controller:
  etcd    agents register in etcd, the controller lists them there;
  static  StatefulSet: the pod names are known, so is the agent list;
  dns     DaemonSet: the ready pods behind the headless Service.
*/}}
{{- define "chorus.discovery" -}}
{{- if .Values.etcd.endpoint }}etcd
{{- else if eq .Values.agents.kind "StatefulSet" }}static
{{- else }}dns
{{- end }}
{{- end }}

{{/* The StatefulSet's agents, host:port, comma-separated. */}}
{{- define "chorus.staticAgents" -}}
{{- $agent := include "chorus.agentName" . }}
{{- $domain := printf "%s.%s.svc.%s" (include "chorus.serviceName" .) .Release.Namespace .Values.clusterDomain }}
{{- $list := list }}
{{- range $i := until (int .Values.agents.replicas) }}
{{- $list = append $list (printf "%s-%d.%s:%d" $agent $i $domain (int $.Values.port)) }}
{{- end }}
{{- join "," $list }}
{{- end }}

{{/*
How controller and agents authenticate, as flags, one YAML list item per
line. `side` is "agent" or "controller"; both mount their files at the
same paths.
*/}}
{{- define "chorus.securityArgs" -}}
{{- $mode := .Values.security.mode }}
{{- if eq $mode "tls" }}
- --tls-dir
- /etc/chorus/tls
{{- else if eq $mode "token" }}
- --token-file
- {{ printf "/etc/chorus/token/%s" .Values.security.token.key | quote }}
{{- else if eq $mode "insecure" }}
- --insecure
{{- else }}
{{- fail (printf "security.mode must be tls, token or insecure, not %q" $mode) }}
{{- end }}
{{- end }}

{{/* Volumes with the security files of one side ("agent" or "controller"). */}}
{{- define "chorus.securityVolumes" -}}
{{- if eq .root.Values.security.mode "tls" }}
- name: tls
  secret:
    secretName: {{ .root.Values.security.tls.secretName }}
    defaultMode: 0440
    items:
      - key: ca.pem
        path: ca.pem
      - key: {{ .side }}.pem
        path: {{ .side }}.pem
      - key: {{ .side }}.key
        path: {{ .side }}.key
{{- else if eq .root.Values.security.mode "token" }}
- name: token
  secret:
    secretName: {{ .root.Values.security.token.secretName }}
    defaultMode: 0440
    items:
      - key: {{ .root.Values.security.token.key }}
        path: {{ .root.Values.security.token.key }}
{{- end }}
{{- end }}

{{- define "chorus.securityMounts" -}}
{{- if eq .Values.security.mode "tls" }}
- name: tls
  mountPath: /etc/chorus/tls
  readOnly: true
{{- else if eq .Values.security.mode "token" }}
- name: token
  mountPath: /etc/chorus/token
  readOnly: true
{{- end }}
{{- end }}
