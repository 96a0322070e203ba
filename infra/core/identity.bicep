// The one user-assigned managed identity the app uses for everything: host storage, the images
// account, the cache table, Azure OpenAI, Application Insights and the deployment package.
// One identity keeps role assignments in one place and lets DefaultAzureCredential pick it
// through AZURE_CLIENT_ID.

@description('Name of the user-assigned managed identity.')
param name string

param location string = resourceGroup().location
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
