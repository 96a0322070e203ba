// Log Analytics and workspace-based Application Insights, both with local (key) auth disabled:
// telemetry is accepted only from Entra-authenticated senders (the app's identity holds
// Monitoring Metrics Publisher, see app/rbac.bicep).

param logAnalyticsName string
param applicationInsightsName string
param location string = resourceGroup().location
param tags object = {}

@description('Days Log Analytics keeps data.')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = appInsights.name
output applicationInsightsId string = appInsights.id
// The connection string carries only the ingestion endpoint and the instrumentation key, which is an
// identifier, not a credential: with DisableLocalAuth the endpoint accepts Entra tokens only.
output connectionString string = appInsights.properties.ConnectionString
output logAnalyticsName string = workspace.name
