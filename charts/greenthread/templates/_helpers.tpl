{{- define "greenthread.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "greenthread.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "greenthread.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "greenthread.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "greenthread.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "greenthread.fullname" .)) -}}
{{- end -}}

{{- /* Where Model artifacts given as local paths may lie: the nodes' models folder. */ -}}
{{- define "greenthread.artifactDirArg" -}}
{{- if .Values.node.modelsHostPath }}
- --artifact-dir=/models
{{- end }}
{{- end -}}

{{- define "greenthread.schedulerUrl" -}}
http://{{ include "greenthread.fullname" . }}-scheduler:{{ .Values.service.port }}
{{- end -}}
