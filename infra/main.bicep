// Vision Functions on Azure: a keyless Flex Consumption deployment.
//
//   azd up                        (azure.yaml; the postdeploy hook wires Event Grid)
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=<name>
//
// One user-assigned identity, Entra ID everywhere (storage shared keys, Azure OpenAI keys and
// Application Insights local auth are all disabled). The Event Grid subscription to the blob
// trigger is deployed after the code by scripts/subscribe-blob-events (app/blob-subscription.bicep).
// Scale arithmetic (quota, maximumInstanceCount, maxDegreeOfParallelism): README "Scale".

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment; makes the resource names unique.')
param environmentName string

@description('Region of every resource; must offer Flex Consumption and the model deployment.')
param location string = resourceGroup().location

@description('Object ID of the deploying user, granted the same data roles as the app (empty: none).')
param principalId string = ''

// Model
param openAiDeploymentName string = 'gpt-4o'
param openAiModelName string = 'gpt-4o'
param openAiModelVersion string = '2024-11-20'
param openAiDeploymentSku string = 'GlobalStandard'
@description('Thousands of tokens per minute of the model deployment.')
param openAiDeploymentCapacity int = 30
@allowed([
  'Enabled'
  'Disabled'
])
param openAiPublicNetworkAccess string = 'Enabled'

// Scale
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 10
param httpPerInstanceConcurrency int = 8

// The service's names: the same defaults as shared/config.py's settings table.
param inputContainerName string = 'images'
param resultsContainerName string = 'results'
param quarantineContainerName string = 'quarantine'
param schemasContainerName string = 'schemas'
param cacheContainerName string = 'vision-cache'
param cacheTableName string = 'visioncache'
@allowed([
  'off'
  'pipeline'
  'all'
])
param localFallback string = 'pipeline'

@description('Container receiving Event Grid events that could not be delivered.')
param deadLetterContainerName string = 'eventgrid-deadletter'

var resourceToken = toLower(uniqueString(resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'

module identity 'core/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'core/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    containerNames: [
      inputContainerName
      resultsContainerName
      quarantineContainerName
      schemasContainerName
      cacheContainerName
      deadLetterContainerName
    ]
    cacheTableName: cacheTableName
  }
}

module monitoring 'core/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module openAi 'core/openai.bicep' = {
  name: 'openai'
  params: {
    name: 'oai-${resourceToken}'
    location: location
    tags: tags
    publicNetworkAccess: openAiPublicNetworkAccess
    deploymentName: openAiDeploymentName
    modelName: openAiModelName
    modelVersion: openAiModelVersion
    deploymentSku: openAiDeploymentSku
    deploymentCapacity: openAiDeploymentCapacity
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    openAiAccountName: openAi.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  params: {
    planName: 'plan-${resourceToken}'
    appName: functionAppName
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    openAiEndpoint: openAi.outputs.endpoint
    openAiDeployment: openAi.outputs.deploymentName
    openAiModel: openAi.outputs.modelName
    openAiTokensPerMinute: openAiDeploymentCapacity * 1000
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    localFallback: localFallback
    inputContainerName: inputContainerName
    resultsContainerName: resultsContainerName
    quarantineContainerName: quarantineContainerName
    schemasContainerName: schemasContainerName
    cacheContainerName: cacheContainerName
    cacheTableName: cacheTableName
  }
  // The app starts with its identity's roles in place, so the first start can read its package.
  dependsOn: [
    rbac
  ]
}

module events 'app/events.bicep' = {
  name: 'events'
  params: {
    name: 'evgt-${resourceToken}'
    location: location
    tags: tags
    storageAccountId: storage.outputs.id
    identityId: identity.outputs.id
  }
}

// Read by azd (as environment values) and by scripts/subscribe-blob-events.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output SERVICE_API_URI string = 'https://${function.outputs.defaultHostName}'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_ACCOUNT_ID string = storage.outputs.id
output AZURE_IDENTITY_ID string = identity.outputs.id
output AZURE_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = openAi.outputs.deploymentName
output AZURE_OPENAI_MODEL string = openAi.outputs.modelName
output EVENT_GRID_SYSTEM_TOPIC_NAME string = events.outputs.name
output EVENT_GRID_DEAD_LETTER_CONTAINER string = deadLetterContainerName
output VISION_INPUT_CONTAINER string = inputContainerName
output VISION_RESULTS_CONTAINER string = resultsContainerName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
