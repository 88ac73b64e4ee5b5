import ArgumentParser

@main
struct Fleetctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleetctl",
        abstract: "Manage BitFleet models and fleets of binary-neural-network devices.",
        discussion: """
        The controller and admin token come from --controller/--token, FLEET_CONTROLLER/FLEET_TOKEN, \
        or ~/.config/bitfleet/fleetctl.json. Exit status is 0 on success, 1 on failure.

        Examples:
          fleetctl model push bnn-cnn.bnn --name fashion-cnn
          fleetctl deploy model v3
          fleetctl devices list
          fleetctl model inspect Models/fashion-mnist/bnn-cnn.bnn
          fleetctl model bench model.bnn --threads 2 --runs 50 --json
        """,
        subcommands: [ModelCommand.self, DeployCommand.self, RolloutCommand.self, DevicesCommand.self, DeviceCommand.self, EnrollTokenCommand.self,
                      StatusCommand.self, MetricsCommand.self, AuditCommand.self, PrivacyCommand.self, DashboardCommand.self]
    )
}

struct ModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Convert, inspect, run and benchmark models; push them to the registry.",
        subcommands: [InspectCommand.self, RunCommand.self, BenchCommand.self, ConvertCommand.self, SynthesizeCommand.self,
                      TraceCommand.self, PushCommand.self, ListModelsCommand.self]
    )
}
