"""What senders and the admin share: the dispatcher that keeps many jobs in flight, the
result store, and the schedules (``sendjob scheduler`` runs them, ``runadmin`` shows
them). Workers never import this package."""
