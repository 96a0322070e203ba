// The Event Grid system topic on the storage account. The subscription that delivers
// BlobCreated events to the function is a separate step (app/blob-subscription.bicep), because
// its webhook URL needs the blobs_extension system key, which exists only once the code is deployed.

param name string
param location string = resourceGroup().location
param tags object = {}
param storageAccountId string

@description('Identity the topic uses to write dead-lettered events (keyless).')
param identityId string

resource topic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = topic.name
